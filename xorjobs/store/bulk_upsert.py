"""Writing many rows at once, inserting or overwriting each by its primary key, on SQLite and Postgres.

SQLAlchemy's executemany of one dict per row spends more CPU turning rows into parameters than the
database spends storing them (issue 11 §2), so the rows go as plain tuples: SQLite gets one
``executemany``; Postgres a binary ``COPY`` into a session-local temporary table and one
``INSERT ... SELECT ... ON CONFLICT`` from it (``COPY`` itself cannot upsert). Both run in the caller's
transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy.exc as sa_exc
from sqlalchemy import Connection


@dataclass(frozen=True)
class BulkUpsert:
    """The statements of one table's bulk upsert, written out whole (constants: nothing of a caller's
    ever goes into SQL text). The rows' values are in the order all of them name the columns."""

    sqlite: str
    """``INSERT ... VALUES (?, ...) ON CONFLICT ... DO UPDATE``, run as one executemany."""
    pg_staging: str
    """Creates the temporary staging table (``... ON COMMIT DELETE ROWS``: emptied at every commit)."""
    pg_copy: str
    """``COPY staging (...) FROM STDIN (FORMAT BINARY)``."""
    pg_copy_types: tuple[str, ...]
    """The binary COPY's column types, as the table declares them."""
    pg_upsert: str
    """``INSERT INTO table ... SELECT ... FROM staging ON CONFLICT ... DO UPDATE``."""


def bulk_upsert(connection: Connection, statements: BulkUpsert, rows: Sequence[Sequence[Any]]) -> None:
    """Insert or overwrite ``rows`` in the connection's transaction."""
    if not rows:
        return
    if connection.dialect.name != "postgresql":
        connection.exec_driver_sql(statements.sqlite, list(rows))  # one executemany
        return
    connection.exec_driver_sql(statements.pg_staging)
    driver = connection.connection.driver_connection
    assert driver is not None
    try:
        with driver.cursor() as cursor, cursor.copy(statements.pg_copy) as copy:
            copy.set_types(list(statements.pg_copy_types))
            for row in rows:
                copy.write_row(row)
    except connection.dialect.loaded_dbapi.Error as error:
        # The COPY runs on the driver's own cursor, outside SQLAlchemy's error handling: raise what
        # SQLAlchemy would have (a lost connection invalidated, so the retry and outage paths see it).
        lost = bool(driver.closed or driver.broken)
        if lost:
            connection.invalidate(error)
        raise sa_exc.DBAPIError.instance(
            statements.pg_copy,
            None,
            error,
            connection.dialect.loaded_dbapi.Error,
            connection_invalidated=lost,
            dialect=connection.dialect,
        ) from error
    connection.exec_driver_sql(statements.pg_upsert)
