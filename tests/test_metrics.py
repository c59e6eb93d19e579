"""``GET /metrics`` (issue 13 §4): the Prometheus text format behind the token, recovery actions counted in
the store on SQLite and Postgres, and a scrape during a real sweep (real worker, real Redis, SQLite)
whose numbers move."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import update

from tests.helpers import TOKEN, Cluster
from tests.services import wait_until
from xorjobs.api.main import create_app
from xorjobs.settings import Settings
from xorjobs.spec import SweepSpec
from xorjobs.store.claims import claim_job
from xorjobs.store.engine import write_session
from xorjobs.store.fleet_metrics import job_duration_histograms, pack_histograms
from xorjobs.store.recovery import claim_republish, published_queued_jobs, reap_expired_leases
from xorjobs.store.schema import upgrade
from xorjobs.store.sweeps import create_sweep, mark_published
from xorjobs.store.tables import Job

AUTH = {"Authorization": f"Bearer {TOKEN}"}
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(client: TestClient) -> Samples:
    response = client.get("/metrics", headers=AUTH)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_need_the_token_and_name_every_family(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    upgrade(url)
    with TestClient(create_app(Settings(database_url=url, api_token=TOKEN))) as client:
        assert client.get("/metrics").status_code == 401
        assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
        text = client.get("/metrics", headers=AUTH).text
        samples = scrape(client)
    for family in (
        "xorjobs_workers",
        "xorjobs_jobs_finished",
        "xorjobs_recovery_actions",
        "xorjobs_job_duration_seconds",
        "xorjobs_pack_duration_seconds",
        "xorjobs_pack_size",
    ):
        assert f"# TYPE {family}" in text, family  # counters: "# TYPE <name>_total counter"
    assert value(samples, "xorjobs_workers", state="live") == 0
    assert ("xorjobs_queue_depth", (("queue", "gpu"),)) in samples  # a 0, not an absent series
    assert value(samples, "xorjobs_recovery_actions_total", action="requeued") == 0


def test_recovery_actions_are_counted_in_the_store(database_url: str) -> None:
    upgrade(database_url)
    sweep = create_sweep(database_url, SweepSpec(variants=["nn"], seeds=[1, 2, 3], lrs=[1.0], steps=10))
    first, second, third = (job.job_id for job in sweep.jobs)
    for job_id in (first, second):
        assert claim_job(database_url, job_id, "gone/1", lease_seconds=0.05, max_attempts=2) is not None
    time.sleep(0.3)
    requeued, failed = reap_expired_leases(database_url, max_attempts=2)
    assert len(requeued) == 2 and failed == []
    assert claim_job(database_url, first, "gone/2", lease_seconds=0.05, max_attempts=2) is not None
    time.sleep(0.3)
    assert reap_expired_leases(database_url, max_attempts=2) == ([], [first])
    mark_published(database_url, [third])
    seen = published_queued_jobs(database_url, "cpu")
    assert len(claim_republish(database_url, {third: seen[third]}).jobs) == 1
    assert claim_republish(database_url, {third: seen[third]}).jobs == []  # the CAS: counted once

    with TestClient(create_app(Settings(database_url=database_url, api_token=TOKEN))) as client:
        samples = scrape(client)
    assert value(samples, "xorjobs_recovery_actions_total", action="requeued") == 2
    assert value(samples, "xorjobs_recovery_actions_total", action="failed_out_of_attempts") == 1
    assert value(samples, "xorjobs_recovery_actions_total", action="republished") == 1
    assert value(samples, "xorjobs_jobs", state="failed", queue="cpu") == 1
    assert value(samples, "xorjobs_queue_depth", queue="cpu") == 2


def test_packs_are_the_overlapping_runs_of_one_training_process(database_url: str) -> None:
    upgrade(database_url)
    sweep = create_sweep(database_url, SweepSpec(variants=["nn"], seeds=[1, 2, 3, 4, 5], lrs=[1.0], steps=10))
    t0 = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    # Process a/1: a pack of 3 (claimed at 0, 0.1, 0.1, all finished at 5), then a solo job from 5.2 to 6;
    # process a/2 alongside: a solo job from 1 to 4.
    plan = [("a/1", 0, 5), ("a/1", 0.1, 5), ("a/1", 0.1, 5), ("a/1", 5.2, 6), ("a/2", 1, 4)]
    with write_session(database_url) as session:
        for job, (holder, start, end) in zip(sweep.jobs, plan, strict=True):
            session.execute(
                update(Job)
                .where(Job.id == job.job_id)
                .values(
                    state="succeeded",
                    worker=holder,
                    started_at=t0 + dt.timedelta(seconds=start),
                    finished_at=t0 + dt.timedelta(seconds=end),
                )
            )
    bounds = (1.0, 4.0, 10.0)
    durations, sizes = pack_histograms(database_url, bounds, (1.0, 2.0, 8.0))
    assert durations["nn"].buckets == (1, 2, 3) and durations["nn"].count == 3  # 0.8, 3 and 5 s
    assert durations["nn"].sum == pytest.approx(8.8, abs=1e-3)
    assert sizes["nn"].buckets == (2, 2, 3) and sizes["nn"].sum == 5  # sizes 1, 1 and 3
    jobs = job_duration_histograms(database_url, bounds)["nn"]
    assert jobs.buckets == (1, 2, 5) and jobs.count == 5 and jobs.sum == pytest.approx(18.6, abs=1e-3)


@pytest.mark.redis
def test_a_scrape_during_a_sweep_sees_the_numbers_move(
    tmp_path: Path, redis_url: str, sqlite_url: str
) -> None:
    cluster = Cluster(tmp_path, sqlite_url, redis_url)  # solo training, one process: jobs one by one
    try:
        cluster.start_worker("w", concurrency=1)
        with TestClient(create_app(Settings(database_url=sqlite_url, api_token=TOKEN))) as client:
            wait_until(
                lambda: value(scrape(client), "xorjobs_workers", state="live") == 1, 60, "a live worker"
            )
            sweep_id, job_ids = cluster.submit(seeds=list(range(1, 7)), steps=3000)
            seen: list[Samples] = []

            def finished() -> bool:
                seen.append(scrape(client))
                return value(seen[-1], "xorjobs_jobs_finished_total", state="succeeded") == len(job_ids)

            wait_until(finished, 180, "every job finished, in the metrics", interval=0.3)
        done = seen[-1]
        succeeded = [value(samples, "xorjobs_jobs_finished_total", state="succeeded") for samples in seen]
        assert succeeded == sorted(succeeded) and any(0 < count < len(job_ids) for count in succeeded)
        assert any(value(samples, "xorjobs_jobs", state="running", queue="cpu") >= 1 for samples in seen)
        assert max(value(samples, "xorjobs_queue_depth", queue="cpu") for samples in seen) >= 1
        assert value(done, "xorjobs_queue_depth", queue="cpu") == 0
        assert value(done, "xorjobs_job_duration_seconds_count", variant="nn") == len(job_ids)
        assert value(done, "xorjobs_job_duration_seconds_sum", variant="nn") > 0
        assert value(done, "xorjobs_job_duration_seconds_bucket", variant="nn", le="+Inf") == len(job_ids)
        assert value(done, "xorjobs_pack_size_sum", variant="nn") == len(job_ids)  # solo: packs of 1
        assert value(done, "xorjobs_pack_duration_seconds_count", variant="nn") == len(job_ids)
        assert value(done, "xorjobs_workers", state="live") == 1
        assert cluster.service.status(sweep_id)["counts"]["succeeded"] == len(job_ids)
    finally:
        cluster.stop()
