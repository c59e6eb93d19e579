"""The fault tests of a pack on the native engine (issue 11 §2): a zombie pack, a crash before the final
commit, a Redis restart mid-sweep.

``tests/test_faults.py`` runs single jobs solo (``XORJOBS_PACK_SIZE=1``), and ``tests/test_packing.py``
kills a worker mid-pack; here the same invariants are checked for packs that the workers train on the
native C kernel (``wide_deep``, whose packs run long enough to be caught mid-way). Every stored job must
say ``engine: native`` (the worker's self-check passed and the pack really ran native), have each logged
step exactly once in its cost curve, written by its final attempt, and equal a clean native run of the
same job bit for bit (the native engine equals the seed's loop: ``tests/test_native_engine.py``;
training each member again solo here would cost minutes).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.ci import require
from tests.helpers import Cluster, Json, pause_outside_the_write_lock, same_bits
from tests.services import wait_until
from xorjobs.models.native_engine import NativeEngine
from xorjobs.store import queries

STEPS = 400_000
"""A pack of 12 wide_deep jobs trains ~3.5 s natively here (60,000 steps took 0.5 s once the kernel got
32-lane blocks: the pack could finish between its first progress write and the test's SIGSTOP)."""
LOG_EVERY = 8000
NATIVE = NativeEngine()


@pytest.fixture(autouse=True)
def _native_here() -> None:
    reason = NATIVE.unavailable_reason()  # the workers would train on the exact engine instead
    require(reason is None, f"the native engine ({reason})")


def native_cluster(cluster: Cluster, **extra_env: str) -> Cluster:
    """The fault tests' cluster (3 s leases, fast reaper) with packing on."""
    packing = Cluster(
        cluster.tmp_path, cluster.url, cluster.settings.broker_url or "", XORJOBS_PACK_SIZE="512", **extra_env
    )
    cluster.workers = packing.workers  # the fixture stops them
    return packing


@pytest.fixture
def sqlite_native(sqlite_cluster: Cluster) -> Iterator[Cluster]:
    yield native_cluster(sqlite_cluster)


def check_native(cluster: Cluster, sweep_id: str) -> Json:
    """The fault invariants, each job trained natively and equal to a clean native run."""
    results = cluster.check_invariants(sweep_id, bit_exact_sample=0)
    jobs = [job for job in results["jobs"] if job["state"] == "succeeded"]
    assert {job["engine"] for job in jobs} == {"native"}, {job["engine"] for job in jobs}
    first = jobs[0]
    clean = NATIVE.train(
        str(first["variant"]),
        [int(job["seed"]) for job in jobs],
        [float(job["lr"]) for job in jobs],
        steps=int(first["steps"]),
        log_every=int(first["log_every"]),
    )
    for job, run in zip(jobs, clean, strict=True):
        assert [step for step, _ in job["costs"]] == [step for step, _ in run.costs]
        assert all(same_bits(a, b) for (_, a), (_, b) in zip(job["costs"], run.costs, strict=True))
        assert all(same_bits(a, b) for a, b in zip(job["hypothesis"], run.hypothesis, strict=True))
        assert job["predicted"] == run.predicted and same_bits(job["accuracy"], run.accuracy)
    return results


def wait_mid_pack(cluster: Cluster, sweep_id: str, job_ids: list[str], running: int) -> None:
    wait_until(
        lambda: queries.sweep_status(cluster.url, sweep_id)["counts"]["running"] >= running,
        60,
        f"a pack of {running}",
        interval=0.05,
    )
    cluster.wait_for_costs(job_ids[-1])  # the pack has written progress: it is mid-way


def test_a_paused_native_pack_cannot_write_after_another_worker_finished_it(sqlite_native: Cluster) -> None:
    cluster = sqlite_native
    cluster.start_worker("w1")
    sweep_id, job_ids = cluster.submit(
        variants=["wide_deep"], seeds=list(range(600, 612)), steps=STEPS, log_every=LOG_EVERY
    )
    wait_mid_pack(cluster, sweep_id, job_ids, running=12)
    paused = cluster.holder(job_ids[0])
    pause_outside_the_write_lock(paused.pid, cluster.url)
    try:
        cluster.start_worker("w2")  # its reaper re-queues the pack once the 3 s leases run out
        status = cluster.wait_finished(sweep_id, timeout=180)
    finally:
        os.killpg(paused.pid, signal.SIGCONT)
    finished = check_native(cluster, str(status["sweep_id"]))["jobs"]
    assert {job["attempt"] for job in finished} == {2}
    paused.wait_for_log("attempt 1 stopped", timeout=60)  # the woken pack was fenced off
    after = cluster.check_invariants(sweep_id, bit_exact_sample=0)["jobs"]
    assert after == finished  # nothing it tried to write after waking was stored


def test_a_native_pack_that_dies_before_its_final_commit_never_half_writes(
    sqlite_cluster: Cluster,
) -> None:
    cluster = native_cluster(
        sqlite_cluster, XORJOBS_FAULT="point=before_final_commit;seed=705;action=exit;attempts=1"
    )
    cluster.start_worker("w1")
    sweep_id, _job_ids = cluster.submit(
        variants=["wide_deep"], seeds=list(range(700, 708)), steps=STEPS // 2, log_every=LOG_EVERY
    )
    half_written: list[Json] = []
    done = threading.Event()

    def watch() -> None:  # never a succeeded job without its result
        while not done.is_set():
            for job in queries.sweep_results(cluster.url, sweep_id)["jobs"]:
                if (job["state"] == "succeeded") != (job["accuracy"] is not None):
                    half_written.append(job)
            time.sleep(0.1)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        status = cluster.wait_finished(sweep_id, timeout=180)
    finally:
        done.set()
        watcher.join()
    results = check_native(cluster, str(status["sweep_id"]))
    assert [job["state"] for job in results["jobs"]] == ["succeeded"] * 8
    assert {job["attempt"] for job in results["jobs"]} == {2}  # the whole pack died, and was re-run once
    assert half_written == []


def test_a_redis_restart_mid_native_sweep_loses_no_job(
    tmp_path: Path, sqlite_url: str, private_redis: tuple[str, Callable[[], None]]
) -> None:
    url, restart = private_redis
    cluster = Cluster(tmp_path, sqlite_url, url, XORJOBS_PACK_SIZE="4")
    try:
        cluster.start_worker("w1", concurrency=2)
        sweep_id, job_ids = cluster.submit(
            variants=["wide_deep"], seeds=list(range(800, 816)), steps=STEPS // 2, log_every=LOG_EVERY
        )
        wait_mid_pack(cluster, sweep_id, job_ids, running=4)
        restart()  # the queued packs' messages are gone; the running packs go on
        status = cluster.wait_finished(sweep_id, timeout=180)
        results = check_native(cluster, str(status["sweep_id"]))
        assert [job["state"] for job in results["jobs"]] == ["succeeded"] * 16
        assert max(job["attempt"] for job in results["jobs"]) <= 2
    finally:
        cluster.stop()
