"""Real services for tests: Redis, Postgres, and xorjobs processes (worker, API) started as users would.

A missing service skips a test locally but fails it when ``CI`` is set (the rule of ``tests/ci.py``),
so CI can never pass by silently skipping what it was meant to test.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

# The processes themselves live in xorjobs.testing (bench/ and scripts/ start them too); tests import
# them from here, beside the Redis and Postgres helpers.
from xorjobs.testing.processes import (
    XORJOBS,
    ServiceProcess,
    clean_env,
    free_port,
    start_api,
    start_worker,
    upgrade_store,
    wait_until,
)

__all__ = [
    "POSTGRES_SERVER_URL",
    "REDIS_URL",
    "XORJOBS",
    "ServiceProcess",
    "clean_env",
    "flush_redis",
    "free_port",
    "fresh_postgres_database",
    "postgres_available",
    "redis_available",
    "start_api",
    "start_worker",
    "upgrade_store",
    "wait_until",
]

REDIS_URL = os.environ.get("XORJOBS_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
POSTGRES_SERVER_URL = os.environ.get(
    "XORJOBS_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


def redis_available(url: str = REDIS_URL) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


def flush_redis(url: str = REDIS_URL) -> None:
    import redis

    redis.Redis.from_url(url).flushdb()


def postgres_available(url: str = POSTGRES_SERVER_URL) -> bool:
    import sqlalchemy

    try:
        engine = sqlalchemy.create_engine(url)
        with engine.connect():
            pass
        engine.dispose()
        return True
    except Exception:
        return False


@contextmanager
def fresh_postgres_database() -> Iterator[str]:
    """A database of its own on the test server, dropped afterwards; yields its SQLAlchemy URL."""
    import sqlalchemy
    from sqlalchemy.engine import make_url

    name = f"xorjobs_test_{uuid.uuid4().hex[:10]}"
    admin = sqlalchemy.create_engine(POSTGRES_SERVER_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(POSTGRES_SERVER_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        from xorjobs.store import engine as store_engine

        for key, engine in list(store_engine._engines.items()):
            if name in key[1]:
                engine.dispose()
                del store_engine._engines[key]
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()
