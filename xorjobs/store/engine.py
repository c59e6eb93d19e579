"""Engines and transaction scopes.

SQLite: WAL (readers never block the writer), a busy timeout, and ``BEGIN IMMEDIATE`` for every write
transaction: a deferred ``BEGIN`` that reads and then writes can deadlock against another process and
fail at once with "database is locked" whatever the timeout (reliability notes §0.6: 720–1437 of 1600
transactions failed with plain BEGIN, 0 with BEGIN IMMEDIATE). Postgres: ``pool_pre_ping`` so a worker
survives a database restart, and connect, keepalive, lock and idle-in-transaction limits
(``POSTGRES_CONNECT_ARGS``, ``POSTGRES_SESSION_SETTINGS``) so a lost worker cannot stall the others.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import URL, Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlalchemy.orm import Session

from xorjobs.errors import InvalidSpec, Unreachable

_WRITE_OPTION = "xorjobs_write"
_engines: dict[tuple[int, str], Engine] = {}


DATABASE_URL_VARIABLE = "XORJOBS_DATABASE_URL"
SUPPORTED_STORES = {"sqlite": "pysqlite", "postgresql": "psycopg"}
"""Backend -> the one driver installed and tested for it (the ``store`` extra: psycopg 3)."""
STORE_URL_FORMS = "sqlite:///PATH or postgresql+psycopg://USER:PASSWORD@HOST:PORT/DATABASE"


def check_database_url(url: str) -> URL:
    """The parsed URL of a store xorjobs can open; else ``InvalidSpec`` naming XORJOBS_DATABASE_URL.

    The message never repeats the URL itself: it may hold a password."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise InvalidSpec(
            DATABASE_URL_VARIABLE, f"cannot be parsed as a database URL; use {STORE_URL_FORMS}"
        ) from None
    backend = parsed.get_backend_name()
    if backend not in SUPPORTED_STORES:
        raise InvalidSpec(
            DATABASE_URL_VARIABLE,
            f"{backend!r} is not a supported store; xorjobs stores in SQLite or PostgreSQL: "
            f"{STORE_URL_FORMS}",
        )
    driver = parsed.get_driver_name()  # loads the dialect: only for a backend known to be there
    if driver != SUPPORTED_STORES[backend]:
        raise InvalidSpec(
            DATABASE_URL_VARIABLE,
            f"the driver {backend}+{driver} is not supported; use {backend}+{SUPPORTED_STORES[backend]} "
            f"({STORE_URL_FORMS})",
        )
    if backend == "postgresql" and not parsed.database:
        raise InvalidSpec(DATABASE_URL_VARIABLE, f"names no database; use {STORE_URL_FORMS}")
    return parsed


def get_engine(url: str) -> Engine:
    """One engine per process and URL, created lazily (a forked Celery child gets its own)."""
    key = (os.getpid(), url)
    if key not in _engines:
        _engines[key] = _create_engine(url)
    return _engines[key]


def dispose_engines_of(database: str) -> None:
    """Close and forget this process's engines on the database named ``database`` (before it is dropped:
    a pooled connection would hold it open), leaving the engines on other databases alone."""
    for key, engine in list(_engines.items()):
        if make_url(key[1]).database == database:
            engine.dispose()
            del _engines[key]


def dispose_engines(close: bool = True) -> None:
    """Drop this process's engines: before it forks children (``close``), or in a forked child, where
    ``close=False`` leaves the parent's inherited connections alone and only forgets them."""
    for engine in _engines.values():
        engine.dispose(close=close)
    _engines.clear()


def describe(url: str) -> str:
    """The store's URL without its password, for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:  # refused where it is opened (check_database_url); never echoed
        return "(an unparseable URL)"


# Postgres session limits, so a worker cut off from the network (or frozen) cannot hold row locks, or
# leave another process waiting, for longer than a fraction of the default 60 s lease (issue 14 §6:
# with none of these, one partitioned worker froze everyone's reaper for 53-129 s, and the server's
# own TCP keepalive, 7,200 s, could have made it two hours). Each can be overridden in the URL's
# query (``?connect_timeout=3&options=-c%20lock_timeout%3D1s``); what the URL sets wins.
POSTGRES_CONNECT_ARGS: dict[str, int] = {
    "connect_timeout": 10,  # seconds to establish a connection: an unreachable host fails fast
    # Client side: an idle connection's dead peer is noticed after 10 + 3 x 5 = 25 s, and data left
    # unacknowledged (a query sent into a partition) fails after 25 s instead of TCP's ~15 minutes.
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
    "tcp_user_timeout": 25_000,  # milliseconds
}
POSTGRES_SESSION_SETTINGS: dict[str, str] = {
    # A row lock waited on longer than this fails with lock_not_available (55P03), which the store's
    # functions retry with backoff (``store.retry``): no claim or write queues behind a stuck holder.
    "lock_timeout": "5s",
    # Every transaction of ours is a few statements sent back to back; one left open this long
    # belongs to a frozen or cut-off process, and the server ends it and frees its locks (a third of
    # the default lease, so the locked jobs are reaped about when their lease runs out anyway).
    "idle_in_transaction_session_timeout": "20s",
    # A backstop for a statement that never returns; far above any statement this store runs.
    "statement_timeout": "300s",
    # Server side: a client that vanished without a FIN is dropped after ~25 s, not 2 hours.
    "tcp_keepalives_idle": "10",
    "tcp_keepalives_interval": "5",
    "tcp_keepalives_count": "3",
}


def postgres_connect_args(url: str) -> dict[str, object]:
    """libpq parameters for ``url``: the defaults above, minus whatever the URL's query sets itself;
    the session settings go in ``options`` ahead of the URL's own (a later ``-c`` wins)."""
    query = make_url(url).query
    args: dict[str, object] = {key: value for key, value in POSTGRES_CONNECT_ARGS.items() if key not in query}
    ours = " ".join(f"-c {name}={value}" for name, value in POSTGRES_SESSION_SETTINGS.items())
    given = query.get("options")
    args["options"] = f"{ours} {given if isinstance(given, str) else ' '.join(given)}" if given else ours
    return args


def _create_engine(url: str) -> Engine:
    parsed = check_database_url(url)  # a Settings built in code is checked here too
    if parsed.get_backend_name() == "postgresql":
        return create_engine(url, pool_pre_ping=True, connect_args=postgres_connect_args(url))
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": 30})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: object) -> None:
        # Let SQLAlchemy's "begin" event issue BEGIN itself (pysqlite's own would be deferred).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        write = connection.get_execution_options().get(_WRITE_OPTION, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


@contextmanager
def write_session(url: str) -> Iterator[Session]:
    """A transaction that writes: commits on success, rolls back on error, and always closes.

    On SQLite it takes the write lock up front (BEGIN IMMEDIATE), so it waits its turn instead of failing.
    """
    engine = get_engine(url).execution_options(**{_WRITE_OPTION: True})
    with _translated_errors(url), Session(engine, expire_on_commit=False) as session, session.begin():
        yield session


@contextmanager
def read_session(url: str) -> Iterator[Session]:
    """A read-only transaction (never blocks writers under WAL)."""
    with _translated_errors(url), Session(get_engine(url), expire_on_commit=False) as session:
        yield session


@contextmanager
def read_connection(url: str) -> Iterator[Connection]:
    """A read-only transaction on a Core connection, for a hot read that needs no ORM: a worker's
    consumer reads one job row per message, and a Session costs about four times the statement."""
    with _translated_errors(url), get_engine(url).connect() as connection:
        yield connection


@contextmanager
def _translated_errors(url: str) -> Iterator[None]:
    try:
        yield
    except OperationalError as error:
        if _is_connection_error(error):
            raise Unreachable(f"cannot reach the store {describe(url)}: {error.orig}") from error
        raise


def _is_connection_error(error: OperationalError) -> bool:
    text = str(error.orig).lower()
    return error.connection_invalidated or any(
        marker in text for marker in ("connection", "could not connect", "unable to open", "server closed")
    )
