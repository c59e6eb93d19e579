"""Recovery queries: expired leases back to the queue, and jobs whose message never reached the broker.

They run in every worker's main process (see ``worker/recovery.py``), so recovery needs no extra
service and works wherever at least one worker lives. Each change is a conditional UPDATE whose
RETURNING tells which rows *this* caller changed, so two reapers racing never re-queue a job twice.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import and_, or_, select, update

from xorjobs.defaults import out_of_attempts_error
from xorjobs.store.clock import utcnow
from xorjobs.store.engine import write_session
from xorjobs.store.sweeps import QueuedJob
from xorjobs.store.tables import Job, JobState


def reap_expired_leases(url: str, max_attempts: int) -> tuple[list[QueuedJob], list[str]]:
    """Re-queue running jobs whose lease expired; fail those that used up their attempts.

    Returns ``(requeued, failed_ids)``. The re-queued jobs have ``published_at`` NULL and must be
    published by the caller (``publish_pending`` does it).
    """
    now = utcnow()
    expired = and_(Job.state == JobState.RUNNING, Job.lease_expires_at < now)
    exhausted = Job.attempts_used >= max_attempts
    with write_session(url) as session:
        failed = session.scalars(
            update(Job)
            .where(expired, exhausted)
            .values(
                state=JobState.FAILED,
                finished_at=now,
                lease_expires_at=None,
                error=out_of_attempts_error(max_attempts),
            )
            .returning(Job.id)
        ).all()
        requeued = session.execute(
            update(Job)
            .where(expired, ~exhausted)
            .values(state=JobState.QUEUED, lease_expires_at=None, published_at=None)
            .returning(Job.id, Job.queue)
        ).all()
    return [QueuedJob(job_id, queue) for job_id, queue in requeued], list(failed)


def unpublished_jobs(url: str, older_than_seconds: float, limit: int = 10_000) -> list[QueuedJob]:
    """Queued jobs whose message the broker never accepted (or lost), oldest first.

    ``older_than_seconds`` leaves the submitter time to publish its own jobs first.
    """
    cutoff = utcnow() - dt.timedelta(seconds=older_than_seconds)
    with write_session(url) as session:
        rows = session.execute(
            select(Job.id, Job.queue)
            .where(Job.state == JobState.QUEUED, Job.published_at.is_(None), Job.created_at < cutoff)
            .order_by(Job.created_at, Job.position)
            .limit(limit)
        ).all()
    return [QueuedJob(job_id, queue) for job_id, queue in rows]


def mark_queued_unpublished(url: str, queue: str | None = None) -> int:
    """Forget that queued jobs were published (the broker lost its messages); returns how many."""
    condition = Job.state == JobState.QUEUED
    if queue is not None:
        condition = and_(condition, Job.queue == queue)
    with write_session(url) as session:
        result = session.execute(
            update(Job).where(condition, or_(Job.published_at.is_not(None))).values(published_at=None)
        )
        return int(result.rowcount)  # type: ignore[attr-defined]
