"""Recovery queries: expired leases back to the queue, and jobs whose message never reached the broker.

They run in every worker's main process (see ``worker/recovery.py``), so recovery needs no extra
service and works wherever at least one worker lives. Each change is a conditional UPDATE whose
RETURNING tells which rows *this* caller changed, so two reapers racing never re-queue a job twice.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import and_, func, or_, select, tuple_, update

from xorjobs.defaults import IDS_PER_STATEMENT, out_of_attempts_error
from xorjobs.store.clock import db_now, utcnow
from xorjobs.store.engine import read_session, write_session
from xorjobs.store.recovery_events import RecoveryAction, count_recovery
from xorjobs.store.requeue import requeue_values
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
                # The lock is ours, but the lease is checked again in the UPDATE, so a claim that
                # took the job over just before we locked it is never re-queued under its new owner.
                chunk = and_(
                    Job.id.in_(expired[start : start + IDS_PER_STATEMENT]),
                    Job.state == JobState.RUNNING,
                    Job.lease_expires_at < db_now(),
                )
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
                        .values(**requeue_values())
                        .returning(Job.id, Job.queue)
                    ).all()
                ]
            count_recovery(session, RecoveryAction.REQUEUED, len(requeued))  # counted with the change itself
            count_recovery(session, RecoveryAction.FAILED_OUT_OF_ATTEMPTS, len(failed))
            return requeued, failed

    return retrying(reap, what="re-queueing expired leases", retry_if=is_conflict_error)


def unpublished_jobs(url: str, older_than_seconds: float, limit: int = 10_000) -> list[QueuedJob]:
    """Queued jobs whose message the broker never accepted (or lost), oldest first (a read: the relay
    itself claims them with ``claim_unpublished``).

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


@dataclass(frozen=True)
class PublishClaim:
    """Jobs one relay took to publish: their ``published_at`` is set to ``marker`` before the publish.

    Claiming first is what makes each job published once with N relays (issue 10 section 8): the
    claim is a conditional UPDATE, so of N relays racing for a row exactly one changes it. A relay that
    dies between claim and publish leaves a job marked published with no message; the broker census
    (``worker/broker_census.py``) finds it and re-publishes it.
    """

    jobs: list[QueuedJob]
    marker: dt.datetime


def claim_unpublished(url: str, older_than_seconds: float, limit: int = 10_000) -> PublishClaim:
    """Claim queued jobs whose message was never sent (``published_at`` NULL), oldest first.

    On Postgres the candidate rows are locked ``FOR UPDATE SKIP LOCKED``, so a second relay takes
    other rows instead of waiting; on SQLite BEGIN IMMEDIATE serialises relays and the second one
    finds the rows already claimed.
    """
    marker = utcnow()
    cutoff = marker - dt.timedelta(seconds=older_than_seconds)
    with write_session(url) as session:
        candidates = (
            select(Job.id)
            .where(Job.state == JobState.QUEUED, Job.published_at.is_(None), Job.created_at < cutoff)
            .order_by(Job.created_at, Job.position)
            .limit(limit)
        )
        if session.get_bind().dialect.name == "postgresql":
            candidates = candidates.with_for_update(skip_locked=True)
        rows = session.execute(
            update(Job)
            .where(Job.id.in_(candidates), Job.state == JobState.QUEUED, Job.published_at.is_(None))
            .values(published_at=marker)
            .returning(Job.id, Job.queue, Job.created_at, Job.position)
        ).all()
    ordered = sorted(rows, key=lambda row: (row.created_at, row.position))
    return PublishClaim([QueuedJob(row.id, row.queue) for row in ordered], marker)


def claim_republish(url: str, observed: Mapping[str, dt.datetime]) -> PublishClaim:
    """Claim queued jobs seen with no message on the broker, each at the ``published_at`` it was seen with.

    ``observed`` maps job id to the ``published_at`` the census read; the UPDATE matches that exact
    value (compare-and-set), so when several relays saw the same job missing, the first claim changes
    the value and the others match nothing: one new message per lost one.
    """
    marker = utcnow()
    items = list(observed.items())
    claimed: list[QueuedJob] = []
    with write_session(url) as session:
        for start in range(0, len(items), IDS_PER_STATEMENT // 2):  # two parameters per row
            chunk = items[start : start + IDS_PER_STATEMENT // 2]
            rows = session.execute(
                update(Job)
                .where(tuple_(Job.id, Job.published_at).in_(chunk), Job.state == JobState.QUEUED)
                .values(published_at=marker)
                .returning(Job.id, Job.queue)
            ).all()
            claimed += [QueuedJob(job_id, queue) for job_id, queue in rows]
        count_recovery(session, RecoveryAction.REPUBLISHED, len(claimed))
    return PublishClaim(claimed, marker)


def release_publish_claim(url: str, job_ids: Sequence[str], marker: dt.datetime) -> None:
    """Put claimed jobs the broker did not take back in the outbox (``published_at`` NULL again)."""
    ids = list(job_ids)
    with write_session(url) as session:
        for start in range(0, len(ids), IDS_PER_STATEMENT):
            session.execute(
                update(Job)
                .where(
                    Job.id.in_(ids[start : start + IDS_PER_STATEMENT]),
                    Job.state == JobState.QUEUED,
                    Job.published_at == marker,
                )
                .values(published_at=None)
            )


def published_queued_jobs(url: str, queue: str) -> dict[str, dt.datetime]:
    """Queued jobs of ``queue`` whose message was sent: job id -> ``published_at`` (for the census)."""
    with read_session(url) as session:
        rows = session.execute(
            select(Job.id, Job.published_at).where(
                Job.state == JobState.QUEUED, Job.queue == queue, Job.published_at.is_not(None)
            )
        ).all()
    return {job_id: published_at for job_id, published_at in rows if published_at is not None}


def published_queued_counts(url: str) -> dict[str, tuple[int, dt.datetime | None]]:
    """Per queue: how many queued jobs have been published, and the oldest ``published_at`` among them."""
    with read_session(url) as session:
        rows = session.execute(
            select(Job.queue, func.count(), func.min(Job.published_at))
            .where(Job.state == JobState.QUEUED, Job.published_at.is_not(None))
            .group_by(Job.queue)
        ).all()
    return {queue: (int(count), oldest) for queue, count, oldest in rows}


def hand_back_job(url: str, job_id: str, attempt: int) -> bool:
    """Give a running job back to the queue after a store or broker error that was not the job's fault.

    Like ``release_job``, but the attempt is forgiven: a store outage must not count against
    ``max_attempts`` (only the job's own failures do). Fenced on the attempt; ``published_at`` NULL so
    the relay sends a new message. False when the attempt no longer owns the job.
    """
    with write_session(url) as session:
        result = session.execute(
            update(Job)
            .where(Job.id == job_id, Job.attempt == attempt, Job.state == JobState.RUNNING)
            .values(**requeue_values(), attempts_forgiven=Job.attempts_forgiven + 1)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]


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
