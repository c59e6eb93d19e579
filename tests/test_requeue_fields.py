"""A job put back to queued forgets the attempt it was released from (issue 13 §2): no ``started_at``,
no ``worker``, no lease, whichever path re-queued it, on SQLite and Postgres."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest
from sqlalchemy import update

from xorjobs.spec import validate_spec
from xorjobs.store import control, queries
from xorjobs.store.claims import claim_job
from xorjobs.store.engine import write_session
from xorjobs.store.recovery import hand_back_job, reap_expired_leases
from xorjobs.store.results import fail_job, release_job
from xorjobs.store.schema import ensure_schema
from xorjobs.store.sweeps import create_sweep
from xorjobs.store.tables import Job


def expire_lease(url: str, job_id: str) -> None:
    past = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    with write_session(url) as session:
        session.execute(update(Job).where(Job.id == job_id).values(lease_expires_at=past))


def _reaped(url: str, job_id: str, attempt: int) -> None:  # the lease ran out (a dead worker)
    expire_lease(url, job_id)
    assert [job.job_id for job in reap_expired_leases(url, 3)[0]] == [job_id]


def _released(url: str, job_id: str, attempt: int) -> None:  # Ctrl-C or a worker's shutdown
    assert release_job(url, job_id, attempt)


def _handed_back(url: str, job_id: str, attempt: int) -> None:  # a store outage (the task's Reject)
    assert hand_back_job(url, job_id, attempt)


def _retried(url: str, job_id: str, attempt: int) -> None:  # `xorjobs retry` of a failed job
    assert fail_job(url, job_id, attempt, "boom")
    sweep_id = str(queries.job_detail(url, job_id)["sweep_id"])
    assert [job.job_id for job in control.retry(url, sweep_id)] == [job_id]


@pytest.mark.parametrize("requeue", [_reaped, _released, _handed_back, _retried])
def test_a_requeued_job_keeps_nothing_of_the_released_attempt(
    database_url: str, requeue: Callable[[str, str, int], None]
) -> None:
    ensure_schema(database_url)
    (job,) = create_sweep(database_url, validate_spec({"variants": ["nn"], "steps": 10})).jobs
    job_id = job.job_id
    claim = claim_job(database_url, job_id, "cpu-1@host-a", 60, 3)
    assert claim is not None
    running = queries.job_detail(database_url, job_id)
    assert running["started_at"] is not None and running["worker"] == "cpu-1@host-a"
    requeue(database_url, job_id, claim.attempt)
    queued = queries.job_detail(database_url, job_id)
    assert queued["state"] == "queued" and queued["attempt"] == claim.attempt
    assert (queued["started_at"], queued["worker"], queued["finished_at"]) == (None, None, None), queued
    again = claim_job(database_url, job_id, "cpu-2@host-b", 60, 3)  # the next attempt writes its own
    assert again is not None and queries.job_detail(database_url, job_id)["worker"] == "cpu-2@host-b"
