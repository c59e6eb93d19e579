"""Early stopping through a real worker (issue 12 §3), on SQLite and Postgres: a stopping sweep's jobs are
stored as the seed's loop run for the steps each trained, with where and why each stopped; a sweep
without a rule, queued beside it, is never packed with it and trains every step.
"""

from __future__ import annotations

from pathlib import Path

from tests.helpers import Cluster
from xorjobs.store import queries

STEPS, LOG_EVERY = 800, 50


def test_a_stopping_sweep_is_stored_as_its_truncated_runs(
    tmp_path: Path, redis_url: str, database_url: str
) -> None:
    cluster = Cluster(tmp_path, database_url, redis_url, XORJOBS_PACK_SIZE="64")
    try:
        # Both sweeps are queued before the worker starts, so its first packs could take either.
        stopping, _ = cluster.submit(
            variants=["nn", "wide_deep", "backprop"],
            seeds=[1, 5, 7],
            lrs=[1.0, 5.0],
            steps=STEPS,
            log_every=LOG_EVERY,
            stop_below=0.3,
            stop_when_solved=True,
        )
        plain, _ = cluster.submit(
            variants=["nn"], seeds=[1, 5, 7], lrs=[1.0, 5.0], steps=STEPS, log_every=LOG_EVERY
        )
        cluster.start_worker("early", concurrency=1)
        for sweep_id, size in ((stopping, 18), (plain, 6)):
            assert cluster.wait_finished(sweep_id)["counts"]["succeeded"] == size
        # Every job equals the seed's own loop run for the steps it trained; each logged step it
        # trained once in its curve, all by its one attempt.
        results = cluster.check_invariants(stopping)
        stopped = [job for job in results["jobs"] if job["stopped_at_step"] is not None]
        assert {job["variant"] for job in stopped} == {"nn", "wide_deep", "backprop"}
        assert len(stopped) < len(results["jobs"])  # some ran all their steps
        # Trained in packs (with compaction), not one by one.
        assert {job["engine"] for job in results["jobs"]} <= {"native", "exact"}
        for job in results["jobs"]:
            assert job["state"] == "succeeded" and job["engine"] is not None
            assert (job["stop_below"], job["stop_when_solved"]) == (0.3, True)
            if job["stopped_at_step"] is None:
                assert job["steps_trained"] == STEPS and job["stop_reason"] is None
                continue
            assert job["steps_trained"] == job["stopped_at_step"] + 1 < STEPS
            assert job["costs"][-1][0] == job["stopped_at_step"]
            if job["stop_reason"] == "cost_below":
                assert job["costs"][-1][1] < 0.3
            else:
                assert job["stop_reason"] == "solved" and job["costs"][-1][1] >= 0.3
        summary = cluster.service.summary(stopping, ["variant"])
        assert sum(group["stopped"] for group in summary["groups"]) == len(stopped)
        unstopped = cluster.check_invariants(plain)
        for job in unstopped["jobs"]:
            assert job["steps_trained"] == STEPS and job["stopped_at_step"] is None
            assert (job["stop_below"], job["stop_when_solved"]) == (None, False)
            assert len(job["costs"]) == STEPS // LOG_EVERY
        # The same nn jobs, with and without the rule: the stopped ones' costs are a prefix of the full run's.
        full = {(job["seed"], job["lr"]): job["costs"] for job in unstopped["jobs"]}
        for job in stopped:
            if job["variant"] == "nn":
                assert job["costs"] == full[(job["seed"], job["lr"])][: len(job["costs"])]
        assert queries.job_detail(cluster.url, stopped[0]["id"])["stop_reason"] in ("cost_below", "solved")
    finally:
        cluster.stop()
