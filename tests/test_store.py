"""The store on SQLite and Postgres: round trips, fencing, recovery queries."""

from __future__ import annotations

import datetime as dt
import math
import threading

import pytest
from sqlalchemy import func, select, update

from xorjobs.errors import LeaseLost
from xorjobs.spec import validate_spec
from xorjobs.store import control, queries
from xorjobs.store.claims import claim_job
from xorjobs.store.costs import record_costs
from xorjobs.store.engine import read_session, write_session
from xorjobs.store.recovery import reap_expired_leases, unpublished_jobs
from xorjobs.store.results import Outcome, fail_job, finish_job
from xorjobs.store.schema import current_revision, ensure_schema, head_revision
from xorjobs.store.sweeps import create_sweep, mark_published
from xorjobs.store.tables import CostCurve, Job


def new_sweep(url: str, **fields: object) -> list[str]:
    ensure_schema(url)
    created = create_sweep(url, validate_spec({"variants": ["nn"], "steps": 300, **fields}))
    return [job.job_id for job in created.jobs]


def outcome(costs: list[tuple[int, float]]) -> Outcome:
    return Outcome(
        unwritten_costs=costs,
        final_cost=costs[-1][1],
        hypothesis=[0.1, math.nan, 0.9, math.inf],
        predicted=[0.0, 0.0, 1.0, 1.0],
        accuracy=0.5,
        device_name="cpu",
        cpu_capability="AVX2",
        torch_version="2.13.0+cpu",
    )


def test_schema_is_created_at_the_head_revision(database_url: str) -> None:
    ensure_schema(database_url)
    assert current_revision(database_url) == head_revision(database_url)


def test_costs_round_trip_exactly_including_non_finite(database_url: str) -> None:
    (job_id,) = new_sweep(database_url)
    claim = claim_job(database_url, job_id, "w", 60, 3)
    assert claim is not None
    values = [(0, 0.7434073090553284), (100, math.nan), (200, math.inf), (300, -math.inf), (400, 5e-324)]
    finish_job(database_url, job_id, claim.attempt, outcome(values))
    stored = queries.job_costs(database_url, job_id)
    assert [step for step, _ in stored] == [0, 100, 200, 300, 400]
    assert stored[0][1] == 0.7434073090553284 and stored[4][1] == 5e-324
    assert math.isnan(stored[1][1]) and stored[2][1] == math.inf and stored[3][1] == -math.inf
    record = queries.job_detail(database_url, job_id)
    assert record["state"] == "succeeded" and record["final_cost"] == 5e-324
    assert math.isnan(record["hypothesis"][1]) and record["hypothesis"][3] == math.inf


def test_a_second_claim_of_a_running_job_gets_nothing(database_url: str) -> None:
    (job_id,) = new_sweep(database_url)
    first = claim_job(database_url, job_id, "a", 60, 3)
    assert first is not None and first.attempt == 1
    assert claim_job(database_url, job_id, "b", 60, 3) is None


def test_claims_racing_from_threads_give_exactly_one_winner(database_url: str) -> None:
    (job_id,) = new_sweep(database_url)
    winners: list[object] = []
    barrier = threading.Barrier(6)

    def claim() -> None:
        barrier.wait()
        result = claim_job(database_url, job_id, threading.current_thread().name, 60, 3)
        if result is not None:
            winners.append(result)

    threads = [threading.Thread(target=claim) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(winners) == 1


def expire_lease(url: str, job_id: str) -> None:
    with write_session(url) as session:
        session.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(lease_expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1))
        )


def test_a_zombie_attempt_cannot_write_after_its_job_was_requeued(database_url: str) -> None:
    (job_id,) = new_sweep(database_url)
    zombie = claim_job(database_url, job_id, "zombie", 60, 3)
    assert zombie is not None
    record_costs(database_url, job_id, zombie.attempt, [(0, 1.0)], 60)
    expire_lease(database_url, job_id)
    requeued, failed = reap_expired_leases(database_url, 3)
    assert [job.job_id for job in requeued] == [job_id] and failed == []
    second = claim_job(database_url, job_id, "second", 60, 3)
    assert second is not None and second.attempt == zombie.attempt + 1
    with pytest.raises(LeaseLost):
        record_costs(database_url, job_id, zombie.attempt, [(100, 2.0)], 60)
    with pytest.raises(LeaseLost):
        finish_job(database_url, job_id, zombie.attempt, outcome([(0, 9.0)]))
    assert not fail_job(database_url, job_id, zombie.attempt, "zombie error")
    finish_job(database_url, job_id, second.attempt, outcome([(0, 1.5), (100, 0.5)]))
    assert queries.job_costs(database_url, job_id) == [[0, 1.5], [100, 0.5]]
    with read_session(database_url) as session:
        attempts = set(session.scalars(select(CostCurve.attempt).where(CostCurve.job_id == job_id)))
    assert attempts == {second.attempt}


def test_a_job_that_keeps_dying_fails_after_max_attempts(database_url: str) -> None:
    (job_id,) = new_sweep(database_url)
    for _ in range(3):
        assert claim_job(database_url, job_id, "w", 60, 3) is not None
        expire_lease(database_url, job_id)
        reap_expired_leases(database_url, 3)
    record = queries.job_detail(database_url, job_id)
    assert record["state"] == "failed" and record["attempt"] == 3
    assert "max_attempts" in record["error"]


def test_two_reapers_racing_requeue_each_job_once(database_url: str) -> None:
    job_ids = new_sweep(database_url, seeds=list(range(20)))
    for job_id in job_ids:
        assert claim_job(database_url, job_id, "w", 60, 3) is not None
        expire_lease(database_url, job_id)
    results: list[list[str]] = []
    barrier = threading.Barrier(3)

    def reap() -> None:
        barrier.wait()
        requeued, _ = reap_expired_leases(database_url, 3)
        results.append([job.job_id for job in requeued])

    threads = [threading.Thread(target=reap) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    all_requeued = [job_id for result in results for job_id in result]
    assert sorted(all_requeued) == sorted(job_ids)


def test_unpublished_jobs_wait_in_the_outbox_until_marked(database_url: str) -> None:
    job_ids = new_sweep(database_url, seeds=[1, 2, 3])
    assert {job.job_id for job in unpublished_jobs(database_url, older_than_seconds=0)} == set(job_ids)
    mark_published(database_url, job_ids[:2])
    assert [job.job_id for job in unpublished_jobs(database_url, older_than_seconds=0)] == job_ids[2:]


def test_same_idempotency_key_returns_the_first_sweep(database_url: str) -> None:
    ensure_schema(database_url)
    spec = validate_spec({"variants": ["nn"], "seeds": [1, 2]})
    first = create_sweep(database_url, spec, "key-1")
    again = create_sweep(database_url, spec, "key-1")
    assert again.sweep_id == first.sweep_id and not again.created
    assert [job.job_id for job in again.jobs] == [job.job_id for job in first.jobs]
    with read_session(database_url) as session:
        assert session.scalar(select(func.count()).select_from(Job)) == 2


def test_cancel_fences_the_running_attempt_and_retry_requeues(database_url: str) -> None:
    job_ids = new_sweep(database_url, seeds=[1, 2])
    running = claim_job(database_url, job_ids[0], "w", 60, 3)
    assert running is not None
    sweep_id = queries.job_detail(database_url, job_ids[0])["sweep_id"]
    assert sorted(control.cancel(database_url, sweep_id)) == sorted(job_ids)
    with pytest.raises(LeaseLost):
        record_costs(database_url, job_ids[0], running.attempt, [(0, 1.0)], 60)
    assert claim_job(database_url, job_ids[1], "w", 60, 3) is None  # a cancelled job never starts
    retried = control.retry(database_url, sweep_id)
    assert sorted(job.job_id for job in retried) == sorted(job_ids)
    again = claim_job(database_url, job_ids[0], "w", 60, 3)
    assert again is not None and again.attempt == running.attempt + 1
