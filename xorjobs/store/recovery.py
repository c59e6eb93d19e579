"""Recovery queries: expired leases back to the queue, and jobs whose message never reached the broker.

They run in every worker's main process (see ``worker/recovery.py``), so recovery needs no extra
service and works wherever at least one worker lives. Each change is a conditional UPDATE whose
RETURNING tells which rows *this* caller changed, so two reapers racing never re-queue a job twice.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import and_, or_, select, update

from xorjobs.defaults import IDS_PER_STATEMENT, out_of_attempts_error
from xorjobs.store.clock import db_now, utcnow
from xorjobs.store.engine import write_session
from xorjobs.store.retry import is_conflict_error, retrying
from xorjobs.store.row_locks import lock_job_rows
from xorjobs.store.sweeps import QueuedJob
from xorjobs.store.tables import Job, JobState


def reap_expired_leases(url: str, max_attempts: int) -> tuple[list[QueuedJob], list[str]]:
    """Re-queue running jobs whose lease expired; fail those that used up their attempts.

    Returns ``(requeued, failed_ids)``. The re-queued jobs have ``published_at`` NULL and must be
    published by the caller (``publish_pending`` does it).

    The expiry is judged on the database's clock. On Postgres the rows are locked ``SKIP LOCKED``: a
    row some transaction still holds (a partitioned worker's, say) is left for a later pass instead of
    stalling this reaper, and everyone's, until that transaction ends (issue 14 §6).
    """

    def reap() -> tuple[list[QueuedJob], list[str]]:
        with write_session(url) as session:
            expired = lock_job_rows(
                session, Job.state == JobState.RUNNING, Job.lease_expires_at < db_now(), skip_locked=True
            )
            failed: list[str] = []
            requeued: list[QueuedJob] = []
            for start in range(0, len(expired), IDS_PER_STATEMENT):
                chunk = Job.id.in_(expired[start : start + IDS_PER_STATEMENT])
                exhausted = Job.attempts_used >= max_attempts
                failed += session.scalars(
                    update(Job)
                    .where(chunk, exhausted)
                    .values(
                        state=JobState.FAILED,
                        finished_at=db_now(),
                        lease_expires_at=None,
                        error=out_of_attempts_error(max_attempts),
                    )
                    .returning(Job.id)
                ).all()
                requeued += [
                    QueuedJob(job_id, queue)
                    for job_id, queue in session.execute(
                        update(Job)
                        .where(chunk, ~exhausted)
                        .values(state=JobState.QUEUED, lease_expires_at=None, published_at=None)
                        .returning(Job.id, Job.queue)
                    ).all()
                ]
            return requeued, failed

    return retrying(reap, what="re-queueing expired leases", retry_if=is_conflict_error)


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
