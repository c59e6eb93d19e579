"""The embedded default: `xorjobs run` with no servers at all, and its recovery after Ctrl-C."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import pytest

from tests.helpers import check_job_against_the_seed_loop
from tests.services import XORJOBS, ServiceProcess, clean_env, wait_until
from xorjobs.store import queries
from xorjobs.store.workers import list_workers
from xorjobs.testing.seed_scripts import run_seed_script


def run_cli(args: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [XORJOBS, *args],
        cwd=cwd,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def worker_states(url: str) -> list[str]:
    """The state of each worker row in the fleet view (``xorjobs workers --all``), all embedded ones."""
    workers = list_workers(url, include_stopped=True)
    assert all(worker["node"].startswith("embedded-") for worker in workers), workers
    return [worker["state"] for worker in workers]


def test_run_with_no_flags_reproduces_the_seed_scripts(tmp_path: Path) -> None:
    """The first thing a newcomer types: all three variants, seed 777, lr 1, 10001 steps."""
    result = run_cli(["run", "--json"], tmp_path)
    assert result.returncode == 0, result.stderr
    jobs = json.loads(result.stdout)["jobs"]
    assert [job["variant"] for job in jobs] == ["nn", "wide_deep", "backprop"]
    for job in jobs:
        assert len(job["costs"]) == 101
        # The seed's script run live on this CPU: the reference files hold what it printed on the CPU
        # that made them, and test_models_fidelity compares with those where this CPU reproduces them.
        check_job_against_the_seed_loop(job)
    assert (tmp_path / ".xorjobs" / "xorjobs.db").exists()
    table = run_cli(["results"], tmp_path)
    assert table.returncode == 0 and table.stdout.count("succeeded") >= 3


def test_run_trains_any_sweep_bit_exact(tmp_path: Path) -> None:
    result = run_cli(
        [
            "run",
            "--variant",
            "nn,backprop",
            "--seed",
            "11,12",
            "--lr",
            "0.25,7",
            "--steps",
            "400",
            "--log-every",
            "40",
            "--json",
        ],
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    jobs = json.loads(result.stdout)["jobs"]
    assert len(jobs) == 8
    for job in jobs:
        check_job_against_the_seed_loop(job)


def test_run_exits_0_when_a_job_only_diverged(tmp_path: Path) -> None:
    # A diverging job still succeeds (its NaN costs are stored); exit 1 is for failed or cancelled jobs,
    # so here everything succeeded and the exit code is 0, with the NaN costs reported as "nan".
    # Exit 1 for a failed job: test_end_to_end.test_submit_wait_and_run_exit_1_when_a_job_failed.
    result = run_cli(
        ["run", "--variant", "backprop", "--seed", "3", "--lr", "1000", "--steps", "300", "--json"], tmp_path
    )
    assert result.returncode == 0, result.stderr
    job = json.loads(result.stdout)["jobs"][0]
    assert job["state"] == "succeeded" and job["final_cost"] == "nan"
    costs, *_ = run_seed_script("backprop", 3, 1000.0, 300, 100)
    assert len(job["costs"]) == len(costs)


def test_run_exits_1_when_a_job_is_cancelled_from_another_shell(tmp_path: Path) -> None:
    """The embedded worker has no time limit to fail a job by (Celery's solo pool enforces none), so the
    embedded run's exit 1 is checked with the other outcome that gives it: ``xorjobs cancel``. Solo (pack
    size 1): the native engine trains the longest job there is (1,000,000 steps) in about a second."""
    env = clean_env(XORJOBS_PROGRESS_SECONDS="0.5", XORJOBS_PACK_SIZE="1")
    run = ServiceProcess(
        [XORJOBS, "run", "--variant", "nn", "--seed", "1", "--steps", "1000000", "--log-every", "1000"],
        env,
        tmp_path / "run.log",
        cwd=tmp_path,
    )
    url = f"sqlite:///{tmp_path / '.xorjobs' / 'xorjobs.db'}"

    def running_sweep() -> str | None:
        try:
            sweep_id = queries.latest_sweep_id(url)
            return sweep_id if queries.sweep_status(url, sweep_id)["counts"]["running"] else None
        except Exception:
            return None

    try:
        sweep_id = str(wait_until(running_sweep, timeout=120, what="the job to start running"))
        assert worker_states(url) == ["live"]  # the in-process worker is in the fleet view while it trains
        cancelled = run_cli(["cancel", sweep_id], tmp_path, timeout=60)
        assert cancelled.returncode == 0, cancelled.stderr
        assert run.process.wait(60) == 1, run.log()
        assert "Traceback" not in run.log()
        assert queries.sweep_status(url, sweep_id)["counts"]["cancelled"] == 1
        assert worker_states(url) == ["stopped"]  # its end recorded (it had no row, and before, "lost")
    finally:
        run.stop()


def test_ctrl_c_leaves_jobs_unfinished_and_a_worker_finishes_them(tmp_path: Path) -> None:
    # Solo training (pack size 1): packed, these four jobs would finish before the test could interrupt.
    env = clean_env(XORJOBS_PROGRESS_SECONDS="0.5", XORJOBS_PACK_SIZE="1")
    run = ServiceProcess(
        [XORJOBS, "run", "--variant", "nn", "--seed", "1-4", "--steps", "6000", "--log-every", "500"],
        env,
        tmp_path / "run.log",
        cwd=tmp_path,
    )
    url = f"sqlite:///{tmp_path / '.xorjobs' / 'xorjobs.db'}"

    def sweep_state() -> dict[str, int] | None:
        try:
            counts: dict[str, int] = queries.sweep_status(url, queries.latest_sweep_id(url))["counts"]
            return counts
        except Exception:
            return None

    wait_until(lambda: (sweep_state() or {}).get("running"), timeout=120, what="a job to start running")
    run.process.send_signal(signal.SIGINT)
    assert run.process.wait(60) == 130
    counts = sweep_state()
    assert counts is not None and counts["running"] == 0 and counts["queued"] >= 1, counts
    assert "picks them up" in run.log()
    # One line says what the stop did; the worker's own notes on the attempt it fenced off are not shown.
    assert "no longer owns" not in run.log() and "fenced off" not in run.log(), run.log()
    assert worker_states(url) == ["stopped"]  # a Ctrl-C is a clean stop too
    run.stop()

    worker = ServiceProcess(
        [XORJOBS, "worker", "--concurrency", "1"], env, tmp_path / "worker.log", cwd=tmp_path
    )
    try:
        wait_until(
            lambda: (sweep_state() or {}).get("succeeded") == 4,
            timeout=240,
            what="the worker to finish the sweep",
        )
    finally:
        worker.stop()
    results = queries.sweep_results(url, queries.latest_sweep_id(url))
    for job in results["jobs"]:
        check_job_against_the_seed_loop(job)


def test_run_device_cuda_without_cuda_exits_2(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    result = run_cli(["run", "--device", "cuda", "--steps", "10"], tmp_path, timeout=120)
    assert result.returncode == 2 and "cuda" in result.stderr.lower() and "Traceback" not in result.stderr


def test_a_gpu_worker_refuses_to_start_without_cuda(tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    result = run_cli(["worker", "--queue", "gpu"], tmp_path, timeout=120)
    assert result.returncode == 2
    assert "gpu worker needs CUDA" in result.stderr and "Traceback" not in result.stderr
