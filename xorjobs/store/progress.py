"""How far a sweep is: what its progress bars show and its ETA is reckoned from (issue 13 §2).

Finished jobs count whole; a running job counts the part of its steps it has logged, so the bar moves
while a pack of 512 jobs trains (its costs are written every ``XORJOBS_PROGRESS_SECONDS``) instead of
standing still until the pack ends. Read in the store, so ``status --watch`` and ``run`` (and any API
client) see the same numbers at the same moment.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from xorjobs.defaults import finished_count
from xorjobs.store.clock import db_now
from xorjobs.store.tables import CostCurve, Job, JobState


def sweep_progress(session: Session, sweep_id: str, counts: dict[str, int]) -> tuple[float, float | None]:
    """``(progress, elapsed_seconds)``: jobs done, with each running job's logged steps as a fraction
    (its last logged step over its steps: the cost at step s is logged before step s trains); and the
    seconds since the sweep's first job started, to its last finish once every job is finished (None
    before any started). Two queries: the running jobs' last logged steps, and the jobs' times."""
    done = float(finished_count(counts))
    if counts.get(JobState.RUNNING, 0):
        last_logged = (
            select(Job.steps, CostCurve.last_step)
            # The running attempt's own curve: an earlier attempt's stays until the new one writes.
            .join(CostCurve, (CostCurve.job_id == Job.id) & (CostCurve.attempt == Job.attempt))
            .where(Job.sweep_id == sweep_id, Job.state == JobState.RUNNING)
        )
        done += sum(min(1.0, step / steps) for steps, step in session.execute(last_logged) if steps)
    # On the database's clock, which wrote started_at and finished_at (this process's may be off).
    first_start, last_finish, now = session.execute(
        select(func.min(Job.started_at), func.max(Job.finished_at), db_now()).where(Job.sweep_id == sweep_id)
    ).one()
    if first_start is None:
        return done, None
    end = last_finish if finished_count(counts) >= sum(counts.values()) and last_finish else now
    return done, max(0.0, (_aware(end) - _aware(first_start)).total_seconds())


def _aware(moment: dt.datetime | str) -> dt.datetime:
    """An aggregate's value as an aware UTC datetime, whatever the driver handed back for it."""
    if isinstance(moment, str):
        moment = dt.datetime.fromisoformat(moment)
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)
