"""What a front end tells a person when the store fails under it: one line, exit 4 / HTTP 503.

The CLI and the API each translate errors in one place; both ask this module whether an error that
reached them is the store being unavailable (a lost or refused connection, "database is locked" past
the busy timeout, "database or disk is full", Postgres shutting down: whatever
``is_transient_store_error`` calls transient, and any other ``OperationalError``, which the driver
raises for the database's trouble rather than for the statement). Such an error is nobody's input
going wrong, so it gets the exit code and status of an unreachable service and a line naming the
database's own words, never a traceback (issue 14 §4).
"""

from __future__ import annotations

import sqlite3

from sqlalchemy import exc as sa_exc

from xorjobs.errors import Unreachable
from xorjobs.store.retry import _chain, _one_line, is_transient_store_error


def store_unavailable(error: BaseException) -> Unreachable | None:
    """The ``Unreachable`` to report for ``error`` when it is the store failing; else None."""
    if not (is_transient_store_error(error) or _is_operational(error)):
        return None
    return Unreachable(f"the store is unavailable: {_one_line(error)}")


def _is_operational(error: BaseException) -> bool:
    return any(
        isinstance(link, (sa_exc.OperationalError, sqlite3.OperationalError)) for link in _chain(error)
    )
