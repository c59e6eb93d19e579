"""Claims: a worker takes a queued (or orphaned) job and bumps its attempt, the job's fencing token.

Every later write of the attempt is conditional on ``jobs.attempt`` still being that attempt and the
job still running, so a duplicate delivery, a reaped "zombie" or a cancelled job cannot write over
newer state (the fencing-token pattern; reliability notes §0.2).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from xorjobs.defaults import out_of_attempts_error
from xorjobs.errors import UnknownJob
from xorjobs.store.clock import db_now, db_now_plus
from xorjobs.store.engine import describe, write_session
from xorjobs.store.retry import is_conflict_error, retrying
from xorjobs.store.tables import Job, JobState


@dataclass(frozen=True)
class Claim:
    """What a worker needs to train a job it has claimed."""

    job_id: str
    attempt: int
    variant: str
    seed: int
    lr: float
    steps: int
    log_every: int
    device: str
    stop_below: float | None = None
    """Early stopping (``models.stopping``): the job's rule, the same for every member of a pack."""
    stop_when_solved: bool = False


def claim_job(
    url: str,
    job_id: str,
    worker: str,
    lease_seconds: float,
    max_attempts: int,
    holder_is_dead: Callable[[str], bool] = lambda _worker: False,
) -> Claim | None:
    """Atomically take a job that is queued (or running but orphaned) and bump its attempt.

    A running job is orphaned when its lease ran out, or when ``holder_is_dead(worker)`` says its holder
    is gone: a worker knows that of a training process on its own machine killed mid-job (whose message
    Celery redelivers at once), and then takes over without waiting for the lease.

    Returns None when there is nothing to do: the job is running elsewhere, finished, cancelled, or was
    failed here for having used up its attempts. Raises UnknownJob when the store has no such job.
    """

    def claim() -> Claim | None:
        with write_session(url) as session:
            return _claim(session, url, job_id, worker, lease_seconds, max_attempts, holder_is_dead)

    return retrying(claim, what=f"claiming job {job_id}", retry_if=is_conflict_error)


def _claim(
    session: Session,
    url: str,
    job_id: str,
    worker: str,
    lease_seconds: float,
    max_attempts: int,
    holder_is_dead: Callable[[str], bool],
) -> Claim | None:
    # The lease is compared with the database's clock, in SQL: this worker's clock may be off. The row
    # is locked first (Postgres; SQLite's BEGIN IMMEDIATE already holds the database) so the UPDATE
    # below never waits: an UPDATE that waited on a lock would keep the lease it computed before the
    # wait, already (partly) spent when it commits. lock_timeout bounds the wait here instead.
    found = session.execute(
        select(Job, (Job.lease_expires_at < db_now()).label("lease_expired"))
        .where(Job.id == job_id)
        .with_for_update(key_share=True)
    ).first()
    if found is None:
        raise UnknownJob(
            f"job {job_id} is not in the store {describe(url)} (is this worker on the right store?)"
        )
    job, lease_expired = found
    if job.state not in (JobState.QUEUED, JobState.RUNNING):
        return None
    fence = [Job.id == job_id, Job.state == job.state, Job.attempt == job.attempt]
    if job.state == JobState.RUNNING:
        holder_dead = job.worker is not None and holder_is_dead(job.worker)
        if not lease_expired and not holder_dead:
            return None
        if not holder_dead:  # taken over for its lease only: the lease must still be out when we write
            fence.append(Job.lease_expires_at < db_now())
    if job.attempts_used >= max_attempts:
        _fail_exhausted(session, job, max_attempts)
        return None
    row = session.execute(
        update(Job).where(*fence).values(**claim_values(worker, lease_seconds)).returning(Job.attempt)
    ).first()
    if row is None:
        return None
    return Claim(
        job.id,
        row.attempt,
        job.variant,
        job.seed,
        job.lr,
        job.steps,
        job.log_every,
        job.device,
        job.stop_below,
        job.stop_when_solved,
    )


def claim_values(worker: str, lease_seconds: float) -> dict[str, object]:
    """What a claim writes: running, the next attempt (the new fencing token), a fresh lease (on the
    database's clock)."""
    return {
        "state": JobState.RUNNING,
        "attempt": Job.attempt + 1,
        "lease_expires_at": db_now_plus(lease_seconds),
        "started_at": db_now(),
        "worker": worker,
        "error": None,
    }


def _fail_exhausted(session: Session, job: Job, max_attempts: int) -> None:
    session.execute(
        update(Job)
        .where(Job.id == job.id, Job.attempt == job.attempt, Job.state == job.state)
        .values(
            state=JobState.FAILED,
            finished_at=db_now(),
            error=out_of_attempts_error(max_attempts),
        )
    )
