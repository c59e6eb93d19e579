"""A Postgres database of the bench's own on the local server, dropped afterwards.

The server is ``XORJOBS_BENCH_POSTGRES_URL`` (default: the one ``make bench`` starts through
``scripts/ensure_services.sh``, the same the tests use).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from xorjobs.testing.databases import fresh_postgres_database

SERVER_URL = os.environ.get(
    "XORJOBS_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


@contextmanager
def fresh_database() -> Iterator[str]:
    """Create an empty database, yield its SQLAlchemy URL, drop it (and this process's engines on it)."""
    with fresh_postgres_database(SERVER_URL, "xorjobs_bench") as url:
        yield url
