"""Real services for tests: Redis, Postgres, and xorjobs processes (worker, API) started as users would.

A missing service skips a test locally but fails it when ``CI`` is set (the rule of ``tests/ci.py``),
so CI can never pass by silently skipping what it was meant to test.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

# The processes themselves live in xorjobs.testing (bench/ and scripts/ start them too); tests import
# them from here, beside the Redis and Postgres helpers.
from xorjobs.testing.databases import fresh_postgres_database as postgres_database_on
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
    with postgres_database_on(POSTGRES_SERVER_URL, "xorjobs_test") as url:
        yield url
