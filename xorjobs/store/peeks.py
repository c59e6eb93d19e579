"""Reading a job's state without the write lock, to skip messages of jobs with nothing to claim."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import bindparam, select

from xorjobs.store.clock import db_now
from xorjobs.store.engine import read_connection
from xorjobs.store.tables import Job, JobState


@dataclass(frozen=True)
class JobPeek:
    """A job's state as read without the write lock (it may change before a claim; the claim decides)."""

    variant: str
    device: str
    state: str
    lease_expired: bool
    """Read on the database's clock, like every lease comparison (this worker's clock may be off)."""
    worker: str | None

    def claimable(self, holder_is_dead: Callable[[str], bool]) -> bool:
        if self.state == JobState.QUEUED:
            return True
        if self.state != JobState.RUNNING:
            return False
        return self.lease_expired or (self.worker is not None and holder_is_dead(self.worker))


_PEEK = select(Job.variant, Job.device, Job.state, Job.lease_expires_at < db_now(), Job.worker).where(
    Job.id == bindparam("job_id")
)
"""Built once: building the statement and its cache key on every call was most of a peek's cost, and a
worker peeks at every message it takes (most of a large sweep's are for jobs a pack already holds)."""


def peek_job(url: str, job_id: str) -> JobPeek | None:
    """Read a job's kind and state (None when the store has no such job)."""
    with read_connection(url) as connection:
        row = connection.execute(_PEEK, {"job_id": job_id}).first()
    if row is None:
        return None
    variant, device, state, lease_expired, worker = row
    return JobPeek(variant, device, state, bool(lease_expired), worker)
