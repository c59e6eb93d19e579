"""Leases: a running attempt's claim on its job, renewed by heartbeats and progress writes.

Every renewal is fenced on ``jobs.attempt`` and the job still running, so a re-queued, cancelled or
taken-over attempt learns it at its next write (``LeaseLost``) instead of writing over newer state
(the fencing-token pattern; reliability notes §0.2). The expiry is on the database's clock
(``db_now_plus``), never the worker's.
"""

from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.orm import Session

from xorjobs.errors import LeaseLost
from xorjobs.store.clock import db_now_plus
from xorjobs.store.engine import write_session
from xorjobs.store.retry import is_conflict_error, retrying
from xorjobs.store.tables import Job, JobState


def renew_in_transaction(session: Session, job_id: str, attempt: int, lease_seconds: float) -> None:
    """Inside the caller's transaction: extend the lease, or raise LeaseLost when fenced off."""
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.attempt == attempt, Job.state == JobState.RUNNING)
        .values(lease_expires_at=db_now_plus(lease_seconds))
    )
    if result.rowcount == 0:  # type: ignore[attr-defined]
        raise LeaseLost(f"job {job_id}: attempt {attempt} no longer owns it")


def renew_lease(url: str, job_id: str, attempt: int, lease_seconds: float) -> None:
    """Heartbeat. Raises LeaseLost when the attempt was fenced off (or the job cancelled)."""

    def renew() -> None:
        with write_session(url) as session:
            renew_in_transaction(session, job_id, attempt, lease_seconds)

    retrying(renew, what=f"renewing the lease of job {job_id}", retry_if=is_conflict_error)
