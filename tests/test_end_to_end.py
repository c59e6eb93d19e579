"""The whole path with real parts: CLI and HTTP → API process → Redis → `xorjobs worker` process → store.

Every job's stored costs, hypothesis and accuracy are checked against the seed's own loop run live in
this test, bit for bit.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
import torch

from tests.helpers import check_job_against_the_seed_loop
from tests.services import XORJOBS, ServiceProcess, clean_env, start_api, start_worker, wait_until
from xorjobs.store import queries

TOKEN = "e2e-token"


@pytest.fixture
def stack(tmp_path: Path, redis_url: str, database_url: str) -> Iterator[dict[str, str]]:
    env = clean_env(
        XORJOBS_HOME=str(tmp_path / "home"),
        XORJOBS_DATABASE_URL=database_url,
        XORJOBS_BROKER_URL=redis_url,
        XORJOBS_API_TOKEN=TOKEN,
        XORJOBS_PROGRESS_SECONDS="0.5",
    )
    processes: list[ServiceProcess] = []
    try:
        processes.append(start_worker(env, tmp_path, concurrency=2))
        api, url = start_api(env, tmp_path)
        processes.append(api)
        yield {**env, "XORJOBS_API_URL": url}
    finally:
        for process in processes:
            process.stop()


def test_sweeps_through_the_api_and_the_cli_complete_bit_exact(
    stack: dict[str, str], database_url: str
) -> None:
    api = httpx2.Client(base_url=stack["XORJOBS_API_URL"], headers={"Authorization": f"Bearer {TOKEN}"})
    created = api.post(
        "/sweeps",
        json={
            "variants": ["nn", "wide_deep", "backprop"],
            "seeds": [777, 5],
            "lrs": [1.0, 0.3],
            "steps": 700,
            "log_every": 50,
        },
    )
    assert created.status_code == 201, created.text
    assert created.json()["warnings"] == []  # a live worker serves the cpu queue
    cli = subprocess.run(
        [
            XORJOBS,
            "submit",
            "--variant",
            "backprop",
            "--seed",
            "3",
            "--lr",
            "1000",
            "--steps",
            "300",
            "--wait",
            "--json",
        ],
        env=stack,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert cli.returncode == 0, cli.stderr
    cli_sweep = json.loads(cli.stdout)["sweep_id"]

    def all_done(sweep_id: str) -> bool:
        counts: dict[str, int] = api.get(f"/sweeps/{sweep_id}").json()["counts"]
        return counts["succeeded"] + counts["failed"] + counts["cancelled"] == sum(counts.values())

    sweep_id = created.json()["sweep_id"]
    wait_until(lambda: all_done(sweep_id), timeout=240, what="the API sweep to finish")
    for checked_sweep, size in ((sweep_id, 12), (cli_sweep, 1)):
        # Read the store directly (not through the API) to check what the workers wrote.
        results = queries.sweep_results(database_url, checked_sweep)
        assert results["counts"]["succeeded"] == size
        for job in results["jobs"]:
            check_job_against_the_seed_loop(job)
            assert job["torch_version"] == torch.__version__ and job["device_name"] == "cpu"
            assert job["worker"].startswith("cpu-") and job["cpu_capability"]
    cli_status = subprocess.run(
        [XORJOBS, "status", cli_sweep, "--json"],
        env=stack,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert json.loads(cli_status.stdout)["counts"]["succeeded"] == 1
    cli_results = subprocess.run(
        [XORJOBS, "results", cli_sweep, "--json"],
        env=stack,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    diverged = json.loads(cli_results.stdout)["jobs"][0]
    assert diverged["costs"][1:] == [[100, "nan"], [200, "nan"]] and diverged["final_cost"] == "nan"


def test_a_worker_fails_loudly_on_a_job_id_its_store_does_not_hold(
    stack: dict[str, str], tmp_path: Path
) -> None:
    from celery import Celery

    app = Celery(broker=stack["XORJOBS_BROKER_URL"])
    app.send_task("xorjobs.train_job", args=["job-from-another-store"], queue="cpu", routing_key="cpu")
    worker_log = tmp_path / "worker.log"
    wait_until(
        lambda: "job-from-another-store is not in the store" in worker_log.read_text(),
        60,
        "the worker's error",
    )


# --- exit code 1: the command worked, and a job failed ------------------------------------------------

TIME_LIMIT_SECONDS = 16
"""XORJOBS_JOB_TIME_LIMIT_SECONDS of the worker below: Celery's soft limit is 15 s less, 1 s, so a job
that trains longer fails with "time_limit" (a real setting, the way a real job fails)."""
ENDLESS_JOB = ["--variant", "nn", "--seed", "1", "--steps", "1000000", "--log-every", "1000"]
"""About a minute of training here: far past the worker's 1 s soft limit."""


@pytest.fixture
def time_limited_stack(tmp_path: Path, redis_url: str) -> Iterator[dict[str, str]]:
    """A worker whose jobs fail after 1 s, and an API, on one SQLite store."""
    env = clean_env(
        XORJOBS_HOME=str(tmp_path / "home"),
        XORJOBS_DATABASE_URL=f"sqlite:///{tmp_path / 'store.db'}",
        XORJOBS_BROKER_URL=redis_url,
        XORJOBS_API_TOKEN=TOKEN,
        XORJOBS_PROGRESS_SECONDS="0.5",
    )
    # Solo (pack size 1): the native engine trains the endless job's 1,000,000 steps in about a second,
    # inside the time limit; solo they take about a minute.
    worker_env = {**env, "XORJOBS_JOB_TIME_LIMIT_SECONDS": str(TIME_LIMIT_SECONDS), "XORJOBS_PACK_SIZE": "1"}
    processes: list[ServiceProcess] = []
    try:
        processes.append(start_worker(worker_env, tmp_path, concurrency=1))
        api, url = start_api(env, tmp_path)
        processes.append(api)
        yield {**env, "XORJOBS_API_URL": url}
    finally:
        for process in processes:
            process.stop()


def test_submit_wait_and_run_exit_1_when_a_job_failed(time_limited_stack: dict[str, str]) -> None:
    in_process = {key: value for key, value in time_limited_stack.items() if key != "XORJOBS_API_URL"}
    commands = {
        "submit --wait over HTTP": (["submit", *ENDLESS_JOB, "--wait", "--json"], time_limited_stack),
        "submit --wait in-process": (["submit", *ENDLESS_JOB, "--wait", "--json"], in_process),
        "run against the API": (["run", *ENDLESS_JOB, "--json"], time_limited_stack),
    }
    for what, (args, env) in commands.items():
        result = subprocess.run(
            [XORJOBS, *args], env=env, capture_output=True, text=True, timeout=180, check=False
        )
        assert result.returncode == 1, f"{what}: exit {result.returncode}\n{result.stderr}"
        assert "Traceback" not in result.stderr, what
        (job,) = json.loads(result.stdout)["jobs"]
        assert job["state"] == "failed", (what, job)
        detail = queries.job_detail(in_process["XORJOBS_DATABASE_URL"], str(job["id"]))
        assert str(detail["error"]).startswith("time_limit"), (what, detail["error"])
