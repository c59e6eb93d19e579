"""Cost rows: the logged (step, cost) pairs of a job, written idempotently per (job, step).

Written in bulk (issue 11 §2): a 10,000-job sweep stores 1.01 M rows, and SQLAlchemy's executemany of
one dict per row spent more CPU turning rows into parameters than the database spent storing them.
SQLite gets one ``executemany`` of plain tuples in the caller's transaction; Postgres a binary ``COPY``
into a session-local temporary table and one ``INSERT ... SELECT ... ON CONFLICT`` from it (``COPY``
itself cannot upsert, and a retried attempt must overwrite its own earlier rows). Both run inside the
caller's transaction, after it has fenced the attempts it writes for, so a stale attempt still writes
nothing; figures in ``bench/cost_writes.py``.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy.exc as sa_exc
from sqlalchemy import Connection
from sqlalchemy.orm import Session

from xorjobs.store.engine import write_session
from xorjobs.store.floats import encode_float
from xorjobs.store.leases import renew_in_transaction
from xorjobs.store.retry import is_conflict_error, retrying

CostRow = tuple[str, int, float | None, int, int]
"""One row of ``costs``: job_id, step, value, kind (``floats.FloatKind``), attempt."""

# The statements, written out whole (constants: nothing of a caller's ever goes into SQL text).
_SQLITE_UPSERT = (
    "INSERT INTO costs (job_id, step, value, kind, attempt) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT (job_id, step) DO UPDATE "
    "SET value = excluded.value, kind = excluded.kind, attempt = excluded.attempt"
)
_PG_STAGING = "CREATE TEMPORARY TABLE IF NOT EXISTS xorjobs_costs_in (LIKE costs) ON COMMIT DELETE ROWS"
"""The Postgres staging table: temporary (this session's own) and emptied at every commit."""
_PG_COPY = "COPY xorjobs_costs_in (job_id, step, value, kind, attempt) FROM STDIN (FORMAT BINARY)"
_PG_COPY_TYPES = ["varchar", "int4", "float8", "int2", "int4"]
"""The binary COPY's column types, as ``costs`` declares them (``CostRow`` order)."""
_PG_UPSERT = (
    "INSERT INTO costs (job_id, step, value, kind, attempt) "
    "SELECT job_id, step, value, kind, attempt FROM xorjobs_costs_in "
    "ON CONFLICT (job_id, step) DO UPDATE "
    "SET value = excluded.value, kind = excluded.kind, attempt = excluded.attempt"
)


def cost_rows(job_id: str, attempt: int, costs: Sequence[tuple[int, float]]) -> list[CostRow]:
    rows: list[CostRow] = []
    for step, cost in costs:
        value, kind = encode_float(cost)
        rows.append((job_id, step, value, int(kind), attempt))
    return rows


def upsert_cost_rows(session: Session, rows: Sequence[CostRow]) -> None:
    """Insert or overwrite cost rows of any number of jobs, in the session's transaction: idempotent
    per (job, step), so a retry never doubles a step and a new attempt overwrites the old one's."""
    if not rows:
        return
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        _copy_upsert(connection, rows)
    else:
        connection.exec_driver_sql(_SQLITE_UPSERT, list(rows))  # one executemany


def _copy_upsert(connection: Connection, rows: Sequence[CostRow]) -> None:
    connection.exec_driver_sql(_PG_STAGING)
    driver = connection.connection.driver_connection
    assert driver is not None
    try:
        with driver.cursor() as cursor, cursor.copy(_PG_COPY) as copy:
            copy.set_types(_PG_COPY_TYPES)
            for row in rows:
                copy.write_row(row)
    except connection.dialect.loaded_dbapi.Error as error:
        # The COPY runs on the driver's own cursor, outside SQLAlchemy's error handling: raise what
        # SQLAlchemy would have (a lost connection invalidated, so the retry and outage paths see it).
        lost = bool(driver.closed or driver.broken)
        if lost:
            connection.invalidate(error)
        raise sa_exc.DBAPIError.instance(
            _PG_COPY,
            None,
            error,
            connection.dialect.loaded_dbapi.Error,
            connection_invalidated=lost,
            dialect=connection.dialect,
        ) from error
    connection.exec_driver_sql(_PG_UPSERT)


def upsert_costs_in_transaction(
    session: Session, job_id: str, attempt: int, costs: Sequence[tuple[int, float]]
) -> None:
    """``upsert_cost_rows`` for one job's costs."""
    upsert_cost_rows(session, cost_rows(job_id, attempt, costs))


def record_costs(
    url: str, job_id: str, attempt: int, costs: Sequence[tuple[int, float]], lease_seconds: float
) -> None:
    """Write a chunk of costs and renew the lease, in one transaction fenced on the attempt."""
    rows = cost_rows(job_id, attempt, costs)

    def record() -> None:
        with write_session(url) as session:
            renew_in_transaction(session, job_id, attempt, lease_seconds)
            upsert_cost_rows(session, rows)

    retrying(record, what=f"writing the costs of job {job_id}", retry_if=is_conflict_error)
