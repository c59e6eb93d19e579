"""A throwaway Postgres database on a server, for the tests and the benchmarks alike."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def fresh_postgres_database(server_url: str, prefix: str) -> Iterator[str]:
    """Create an empty database named ``<prefix>_<random>`` on ``server_url``, yield its SQLAlchemy URL,
    then drop it (closing this process's engines on it first; ``FORCE`` ends any other session)."""
    import sqlalchemy
    from sqlalchemy.engine import make_url

    from xorjobs.store.engine import dispose_engines_of

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = sqlalchemy.create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        dispose_engines_of(name)
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()
