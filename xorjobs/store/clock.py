"""Time in the store: the database's clock for leases, the process's clock only for what people read.

Workers on several hosts share one store but not one clock (a worker 2 minutes fast took over healthy
jobs, one 2 minutes slow kept dead ones: issue 14 §3). So every lease is written *and* compared in SQL
with the database server's clock, ``db_now()``: a worker's own clock never enters lease arithmetic.

On Postgres that is ``clock_timestamp()`` (the time of the statement's execution, not of its
transaction's start: a claim that waited on a lock still gets a whole lease). On SQLite, which runs in
the writer's process, the expression yields the same text SQLAlchemy writes for ``UtcDateTime``
(``YYYY-MM-DD HH:MM:SS.ffffff``, UTC), so stored leases and ``db_now()`` compare as strings in time
order. ``utcnow()`` stays for ages and cut-offs shown to people.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Float, literal
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from xorjobs.store.tables import UtcDateTime


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class _DbClock(FunctionElement[dt.datetime]):
    """The database server's time now, plus a number of seconds (a SQL expression)."""

    type = UtcDateTime()
    inherit_cache = True
    name = "xorjobs_db_clock"


def db_now() -> _DbClock:
    """The database's time now, as a SQL expression for a statement's WHERE or SET."""
    return _DbClock(literal(0.0, Float))


def db_now_plus(seconds: float) -> _DbClock:
    """The database's time ``seconds`` from now (a lease's expiry), as a SQL expression."""
    return _DbClock(literal(float(seconds), Float))


@compiles(_DbClock, "postgresql")
def _postgres_clock(element: _DbClock, compiler: SQLCompiler, **kw: Any) -> str:
    seconds = compiler.process(element.clauses, **kw)
    return f"(clock_timestamp() + make_interval(secs => {seconds}))"


@compiles(_DbClock, "sqlite")
def _sqlite_clock(element: _DbClock, compiler: SQLCompiler, **kw: Any) -> str:
    # strftime's %f gives milliseconds ("SS.SSS"); three zeros make SQLAlchemy's microsecond format.
    seconds = compiler.process(element.clauses, **kw)
    return f"(strftime('%Y-%m-%d %H:%M:%f', 'now', printf('%+.3f seconds', {seconds})) || '000')"


@compiles(_DbClock)
def _other_clock(element: _DbClock, compiler: SQLCompiler, **kw: Any) -> str:
    raise NotImplementedError(f"no database clock for the {compiler.dialect.name} dialect")
