"""Deleting sweeps: one on request (``xorjobs delete``), or every finished one past an age (``prune``).

The schema cascades (costs → jobs → sweeps, ``ondelete="CASCADE"``, and SQLite's foreign keys are on),
but the costs are deleted explicitly anyway, in chunks of jobs: it does not depend on the pragma, and
it keeps each statement's parameter list small on both backends.

A sweep with queued or running jobs is refused unless the caller cancels them in the same transaction:
a worker still training one of its jobs would otherwise lose its rows under it. (Its next fenced write
fails on the missing row and it stops, as for a cancel.)
"""

from __future__ import annotations

import datetime as dt
import logging
import sqlite3
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import case, delete, func, select, update
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from xorjobs.defaults import IDS_PER_STATEMENT
from xorjobs.errors import InvalidSpec, NotFound, SweepActive
from xorjobs.store.clock import utcnow
from xorjobs.store.engine import get_engine, write_session
from xorjobs.store.tables import CostCurve, Job, JobState, Sweep

ACTIVE_STATES = (JobState.QUEUED, JobState.RUNNING)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeletedSweep:
    sweep_id: str
    name: str | None
    created_at: str
    jobs: int
    costs: int
    cancelled: int
    """Jobs that were queued or running and were cancelled first (only with ``cancel_active``)."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def delete_sweep(url: str, sweep_id: str, cancel_active: bool = False) -> DeletedSweep:
    """Delete the sweep, its jobs and their costs in one transaction.

    Raises NotFound for an unknown id and SweepActive when jobs are queued or running, unless
    ``cancel_active``, which cancels them first.
    """
    with write_session(url) as session:
        sweep = session.get(Sweep, sweep_id)
        if sweep is None:
            raise NotFound(f"no sweep {sweep_id}")
        active = (
            session.scalar(select(func.count()).where(Job.sweep_id == sweep_id, Job.state.in_(ACTIVE_STATES)))
            or 0
        )
        if active and not cancel_active:
            # Each front end adds how to proceed in its own terms (the CLI a flag, the API a parameter).
            raise SweepActive(f"sweep {sweep_id} has {active} queued or running job(s)")
        cancelled = 0
        if active:
            cancelled = session.execute(
                update(Job)
                .where(Job.sweep_id == sweep_id, Job.state.in_(ACTIVE_STATES))
                .values(state=JobState.CANCELLED, finished_at=utcnow(), lease_expires_at=None)
            ).rowcount  # type: ignore[attr-defined]
        jobs, costs = _delete_sweep_rows_in_session(session, sweep_id)
        return DeletedSweep(sweep_id, sweep.name, sweep.created_at.isoformat(), jobs, costs, cancelled)


def _delete_sweep_rows_in_session(session: Session, sweep_id: str) -> tuple[int, int]:
    """Inside the caller's transaction: cost curves by chunks of jobs, then the jobs, then the sweep;
    returns how many jobs and logged costs went."""
    job_ids = list(session.scalars(select(Job.id).where(Job.sweep_id == sweep_id)))
    costs = _logged_costs(session, sweep_id)
    for start in range(0, len(job_ids), IDS_PER_STATEMENT):
        chunk = job_ids[start : start + IDS_PER_STATEMENT]
        session.execute(delete(CostCurve).where(CostCurve.job_id.in_(chunk)))
    jobs = session.execute(delete(Job).where(Job.sweep_id == sweep_id)).rowcount  # type: ignore[attr-defined]
    session.execute(delete(Sweep).where(Sweep.id == sweep_id))
    return jobs, costs


def _logged_costs(session: Session, sweep_id: str) -> int:
    """How many logged costs the sweep's jobs hold (what ``delete`` and ``prune`` report as costs)."""
    total = session.scalar(
        select(func.sum(CostCurve.points))
        .join(Job, Job.id == CostCurve.job_id)
        .where(Job.sweep_id == sweep_id)
    )
    return int(total or 0)


def prune_sweeps(url: str, older_than: dt.timedelta, dry_run: bool = False) -> list[DeletedSweep]:
    """Delete every finished sweep (no job queued or running) that finished more than ``older_than`` ago.

    A sweep's age counts from its last job's end (from its creation when it has no finished job), so
    a long sweep is not pruned the day it ends. With ``dry_run`` nothing is deleted; the result lists
    what would be (``cancelled`` is always 0: active sweeps are never pruned).
    """
    cutoff = utcnow() - older_than
    active = func.sum(case((Job.state.in_(ACTIVE_STATES), 1), else_=0))
    candidates = (
        select(Sweep.id, Sweep.name, Sweep.created_at, func.max(Job.finished_at), active, func.count(Job.id))
        .outerjoin(Job, Job.sweep_id == Sweep.id)
        .group_by(Sweep.id, Sweep.name, Sweep.created_at)
        .order_by(Sweep.created_at, Sweep.id)
    )
    with write_session(url) as session:
        deleted = []
        for sweep_id, name, created_at, last_finished, active_jobs, job_count in session.execute(
            candidates
        ).all():
            if active_jobs or _as_utc(last_finished or created_at) >= cutoff:
                continue
            if dry_run:
                costs = _logged_costs(session, sweep_id)
                deleted.append(
                    DeletedSweep(sweep_id, name, _as_utc(created_at).isoformat(), job_count, costs, 0)
                )
            else:
                jobs, costs = _delete_sweep_rows_in_session(session, sweep_id)
                deleted.append(DeletedSweep(sweep_id, name, _as_utc(created_at).isoformat(), jobs, costs, 0))
    if deleted and not dry_run:
        reclaim_space(url)
    return deleted


def reclaim_space(url: str) -> None:
    """Give the pages of deleted rows back to the file system on SQLite (``VACUUM``; WAL checkpointed so
    the main file shrinks now). Postgres reuses dead rows itself (autovacuum), so nothing is done there.

    Best effort: the rows are already gone, so a VACUUM that cannot get the database (another process
    in a long read) is logged and the prune still succeeds; the next prune tries again."""
    if make_url(url).get_backend_name() != "sqlite":
        return
    with get_engine(url).connect() as connection:
        raw = connection.connection.dbapi_connection
        assert isinstance(raw, sqlite3.Connection)
        try:
            # Outside any transaction (the engine's connections run in autocommit; BEGIN is explicit).
            raw.execute("VACUUM")
            raw.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.OperationalError as error:
            log.warning("prune: the space of the deleted rows is not reclaimed yet (%s)", error)


def _as_utc(moment: dt.datetime) -> dt.datetime:
    """Aggregates (``max``) bypass the column's type decorator: SQLite hands back naive UTC, or text."""
    if isinstance(moment, str):
        moment = dt.datetime.fromisoformat(moment)
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)


def parse_age(text: str, field: str = "older_than") -> dt.timedelta:
    """``30d``, ``12h``, ``90m``, ``45s`` or ``2w`` → a timedelta (else an InvalidSpec naming ``field``)."""
    units = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
    stripped = text.strip().lower()
    number, unit = stripped[:-1], stripped[-1:]
    if unit not in units or not number.isdigit():
        raise InvalidSpec(field, f"{text!r} is not an age like 30d, 12h, 90m, 45s or 2w")
    try:
        return dt.timedelta(**{units[unit]: int(number)})
    except OverflowError:
        raise InvalidSpec(field, f"{text!r} is too long an age") from None
