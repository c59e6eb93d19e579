"""Which store errors are transient, and retrying idempotent transactions through them with backoff.

One place decides what "transient" means, so a worker, the recovery loop, the submitter and the CLI
agree on it: the database went away or refused us for a moment (connection lost or refused, an admin's
``pg_terminate_backend``, a server restart, too many connections), or it aborted our transaction to
break a conflict (deadlock, serialization failure, a lock or statement timeout). Retrying such an error
is safe when the transaction is idempotent: a write fenced on ``(job id, attempt)``, an upsert, or an
UPDATE whose WHERE clause makes a second run a no-op. Everything else (a constraint violation, a bug, a
``LeaseLost``) is not transient and goes to the caller at once.
"""

from __future__ import annotations

import logging
import random
import sqlite3
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

from sqlalchemy import exc as sa_exc

log = logging.getLogger(__name__)

T = TypeVar("T")

# PostgreSQL SQLSTATEs (https://www.postgresql.org/docs/current/errcodes-appendix.html).
_TRANSIENT_SQLSTATE_CLASSES = frozenset(
    {
        "08",  # connection exception: refused, lost, failure to establish
        "53",  # insufficient resources: disk full, out of memory, too many connections
        "57",  # operator intervention: admin/crash shutdown, cannot connect now, query canceled
    }
)
_TRANSIENT_SQLSTATES = frozenset(
    {
        "40001",  # serialization_failure
        "40P01",  # deadlock_detected
        "55P03",  # lock_not_available (lock_timeout, NOWAIT)
        "25P03",  # idle_in_transaction_session_timeout: the server ended a stalled transaction
    }
)
_CONFLICT_SQLSTATES = frozenset({"40001", "40P01", "55P03"})
# SQLite primary result codes as Python's sqlite3 names them (``sqlite_errorname``), and the messages of
# older builds without that attribute.
_TRANSIENT_SQLITE_NAMES = frozenset({"SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_FULL", "SQLITE_CANTOPEN"})
_TRANSIENT_SQLITE_TEXTS = ("database is locked", "database or disk is full", "unable to open database")
# psycopg's messages for a connection that never came up or broke, which carry no SQLSTATE.
_CONNECTION_TEXTS = (
    "connection refused",
    "could not connect",
    "server closed the connection",
    "connection is closed",
    "connection timeout",
    "timeout expired",
    "terminating connection",
    "consuming input failed",
    "the connection is lost",
)

DEFAULT_DEADLINE_SECONDS = 30.0
"""How long ``retrying`` keeps trying by default: past a Postgres restart or failover, short enough
that a caller with a person waiting (the CLI, a submit) answers within the minute."""


def is_transient_store_error(error: BaseException) -> bool:
    """True when ``error`` (or an error it was raised from) is a store error worth retrying."""
    for link in _chain(error):
        if isinstance(link, (sa_exc.DisconnectionError, sa_exc.TimeoutError)):
            return True  # the pool's own: a pre-ping that failed, no connection free in time
        if isinstance(link, sa_exc.DBAPIError) and link.connection_invalidated:
            return True
        if _is_transient_driver_error(link):
            return True
    return False


def is_conflict_error(error: BaseException) -> bool:
    """True when the database rolled the transaction back to settle a conflict with another one
    (deadlock, serialization failure, lock timeout; SQLite busy): nothing of it was committed, so
    running it again is exact even when it is not idempotent."""
    for link in _chain(error):
        if isinstance(link, sqlite3.Error):
            if getattr(link, "sqlite_errorname", "") in {"SQLITE_BUSY", "SQLITE_LOCKED"}:
                return True
            if "database is locked" in str(link).lower():
                return True
        sqlstate = getattr(link, "sqlstate", None)
        if sqlstate in _CONFLICT_SQLSTATES:
            return True
    return False


def _chain(error: BaseException) -> Iterator[BaseException]:
    """The error, what it was raised from, and so on (SQLAlchemy wraps the driver's error as ``orig``)."""
    seen: set[int] = set()
    pending: list[BaseException] = [error]
    while pending:
        link = pending.pop()
        if id(link) in seen:
            continue
        seen.add(id(link))
        yield link
        for nested in (getattr(link, "orig", None), link.__cause__, link.__context__):
            if isinstance(nested, BaseException):
                pending.append(nested)


def _is_transient_driver_error(error: BaseException) -> bool:
    if isinstance(error, sqlite3.Error):
        name = getattr(error, "sqlite_errorname", "")
        text = str(error).lower()
        return name in _TRANSIENT_SQLITE_NAMES or any(marker in text for marker in _TRANSIENT_SQLITE_TEXTS)
    sqlstate = getattr(error, "sqlstate", None)  # psycopg's errors carry it
    if isinstance(sqlstate, str) and sqlstate:
        return sqlstate in _TRANSIENT_SQLSTATES or sqlstate[:2] in _TRANSIENT_SQLSTATE_CLASSES
    if type(error).__module__.startswith("psycopg") and type(error).__name__ == "OperationalError":
        return True  # psycopg raises OperationalError without a SQLSTATE only for a connection it lost
    text = str(error).lower()
    return isinstance(error, sa_exc.OperationalError) and any(marker in text for marker in _CONNECTION_TEXTS)


def backoff_delays(first_seconds: float = 0.05, max_seconds: float = 2.0) -> Iterator[float]:
    """Exponential backoff with full jitter (each delay uniform in [0, cap]), forever.

    Jitter matters here: two transactions that deadlocked once would deadlock again if both retried
    after the same pause.
    """
    cap = first_seconds
    while True:
        yield random.uniform(0, cap)
        cap = min(cap * 2, max_seconds)


def retrying(
    operation: Callable[[], T],
    *,
    what: str,
    deadline_seconds: float = DEFAULT_DEADLINE_SECONDS,
    first_delay_seconds: float = 0.05,
    max_delay_seconds: float = 2.0,
    retry_if: Callable[[BaseException], bool] = is_transient_store_error,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """Run ``operation`` (one whole transaction) until it succeeds, retrying transient store errors.

    ``operation`` must be idempotent: a connection lost during COMMIT leaves unknown whether the first
    try committed, so the retry must be harmless either way. Raises the last error once
    ``deadline_seconds`` have passed, and any non-transient error at once. ``what`` names the operation
    in the one warning line logged per retry. ``retry_if`` narrows what is retried (the store's own
    functions retry only ``is_conflict_error``, and leave a lost connection to their callers).
    """
    give_up_at = clock() + deadline_seconds
    delays = backoff_delays(first_delay_seconds, max_delay_seconds)
    tries = 0
    while True:
        tries += 1
        try:
            return operation()
        except Exception as error:
            if not retry_if(error):
                raise
            delay = next(delays)
            if clock() + delay > give_up_at:
                raise
            log.warning(
                "%s: transient store error (try %d), retrying in %.2f s: %s",
                what,
                tries,
                delay,
                _one_line(error),
            )
            sleep(delay)


def _one_line(error: BaseException) -> str:
    orig = getattr(error, "orig", None)
    text = str(orig if orig is not None else error).strip()
    return text.splitlines()[0] if text else type(error).__name__
