"""A Postgres database of the bench's own on the local server, dropped afterwards.

The server is ``XORJOBS_BENCH_POSTGRES_URL`` (default: the one ``make bench`` starts through
``scripts/ensure_services.sh``, the same the tests use).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

SERVER_URL = os.environ.get(
    "XORJOBS_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


@contextmanager
def fresh_database() -> Iterator[str]:
    """Create an empty database, yield its SQLAlchemy URL, drop it (and this process's engines on it)."""
    import sqlalchemy
    from sqlalchemy.engine import make_url

    from xorjobs.store.engine import dispose_engines

    name = f"xorjobs_bench_{uuid.uuid4().hex[:10]}"
    admin = sqlalchemy.create_engine(SERVER_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(SERVER_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        dispose_engines()
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()
