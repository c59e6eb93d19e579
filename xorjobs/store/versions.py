"""A sweep's data version: a short string that changes whenever what its summary or plot shows can change.

The summary and the cost-curve plot read every cost of a sweep (a million rows for 10,000 jobs); the
dashboard asks for them every few seconds from every open tab. The version is what the API's ETag is
made of (``api/conditional.py``), so a request whose sweep did not change is answered 304, or from the
API's cache, without reading a cost. It is cheap: one aggregate over the sweep's job rows (per state: how
many, the latest start and finish, the attempts, which a retry bumps) and, only while jobs run, the count
of the running jobs' logged points, which grows with each progress write, so live curves still move.
"""

from __future__ import annotations

from sqlalchemy import func, select

from xorjobs.store.engine import read_session
from xorjobs.store.tables import CostCurve, Job, JobState


def sweep_version(url: str, sweep_id: str) -> str | None:
    """None for a sweep with no jobs (an unknown id: the caller's own read then answers 404)."""
    with read_session(url) as session:
        rows = session.execute(
            select(
                Job.state,
                func.count(),
                func.max(Job.started_at),
                func.max(Job.finished_at),
                func.sum(Job.attempt),
            )
            .where(Job.sweep_id == sweep_id)
            .group_by(Job.state)
            .order_by(Job.state)
        ).all()
        if not rows:
            return None
        parts = [
            f"{state}:{count}:{started}:{finished}:{attempts}"
            for state, count, started, finished, attempts in rows
        ]
        if any(state == JobState.RUNNING for state, *_ in rows):
            logged = session.scalar(
                select(func.sum(CostCurve.points))
                .join(Job, Job.id == CostCurve.job_id)
                .where(Job.sweep_id == sweep_id, Job.state == JobState.RUNNING)
            )
            parts.append(f"logged:{logged}")
    return "|".join(parts)
