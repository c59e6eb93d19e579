"""Helpers several test modules share (fixtures live in conftest.py; real services in services.py).

A test module never imports another test module: what two of them need is here.
"""

from __future__ import annotations

import json
import math
import os
import signal
import sqlite3
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest
from sqlalchemy import select

from tests.services import ServiceProcess, clean_env, start_worker, wait_until
from xorjobs.cli import main
from xorjobs.service import Service
from xorjobs.settings import Settings, get_settings
from xorjobs.spec import SweepSpec, validate_spec
from xorjobs.store import control, queries
from xorjobs.store.claims import claim_job
from xorjobs.store.costs import record_costs
from xorjobs.store.curve_codec import decode_curve
from xorjobs.store.engine import read_session
from xorjobs.store.results import Outcome, fail_job, finish_job
from xorjobs.store.schema import ensure_schema, upgrade
from xorjobs.store.sweeps import create_sweep
from xorjobs.store.tables import CostCurve
from xorjobs.testing.seed_scripts import run_seed_script

Json = dict[str, Any]
"""A JSON-shaped record as the store's queries, the CLI's ``--json`` and the API return it."""

# --- bit-exact comparisons with the seed's own loop ------------------------------------------------


def same_bits(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


def check_job_against_the_seed_loop(job: Json) -> None:
    """A stored job record (as ``results --json`` or the store's queries give it) equals the seed's
    script run live with the job's inputs, bit for bit."""
    # A job that stopped early (issue 12 §3) equals the seed's loop run for the steps it trained.
    steps = int(job.get("steps_trained") or job["steps"])
    costs, hypothesis, predicted, accuracy = run_seed_script(
        str(job["variant"]), int(job["seed"]), float(job["lr"]), steps, int(job["log_every"])
    )
    stored_costs = job["costs"]
    assert isinstance(stored_costs, list)
    assert [step for step, _ in stored_costs] == [step for step, _ in costs]
    assert all(same_bits(a, b) for (_, a), (_, b) in zip(stored_costs, costs, strict=True))
    assert all(same_bits(a, b) for a, b in zip(job["hypothesis"], hypothesis, strict=True))
    assert job["predicted"] == predicted and same_bits(job["accuracy"], accuracy)
    assert same_bits(job["last_logged_cost"], costs[-1][1])
    assert same_bits(job["final_cost"], seed_trained_cost(str(job["variant"]), hypothesis))


def seed_trained_cost(variant: str, hypothesis: list[float]) -> float:
    """The seed's own criterion of its final hypothesis (issue 12 §4: what ``final_cost`` reports)."""
    import torch

    y = torch.FloatTensor([[0], [1], [1], [0]])
    h = torch.tensor(hypothesis, dtype=torch.float32).reshape(4, 1)
    with torch.no_grad():
        if variant == "backprop":
            return float((-torch.mean(y * torch.log(h) + (1 - y) * torch.log(1 - h))).item())
        return float(torch.nn.BCELoss()(h, y).item())


# --- a sweep whose every outcome is known in advance (analysis, plots, housekeeping) ----------------

TOKEN = "analysis-token"
"""The API token of the tests that serve the known sweep."""
NAN, INF = math.nan, math.inf
TOKEN = "analysis-token"

# (variant, seed, lr) → what happens to the job: ("succeeded", costs, accuracy), ("failed", costs),
# ("cancelled",) or ("queued",). A succeeded job's final cost is its last logged cost.
KNOWN_SWEEP: dict[tuple[str, int, float], tuple[object, ...]] = {
    ("nn", 1, 1.0): ("succeeded", [(0, 0.7), (100, 0.04), (200, 0.01)], 1.0),
    ("nn", 2, 1.0): ("succeeded", [(0, 0.7), (100, 0.3), (200, 0.03)], 1.0),
    ("nn", 3, 1.0): ("succeeded", [(0, 0.7), (100, NAN), (200, NAN)], 0.5),
    ("nn", 1, 0.5): ("succeeded", [(0, 0.7), (100, 0.6), (200, 0.5)], 0.75),
    ("nn", 2, 0.5): ("failed", [(0, 0.7)]),
    ("nn", 3, 0.5): ("queued",),
    ("backprop", 1, 1.0): ("succeeded", [(0, 0.6), (100, 0.02), (200, 0.001)], 1.0),
    ("backprop", 2, 1.0): ("succeeded", [(0, 0.8), (100, 0.04), (200, 0.002)], 1.0),
    ("backprop", 3, 1.0): ("succeeded", [(0, 0.7), (100, 0.2), (200, 0.006)], 1.0),
    ("backprop", 1, 0.5): ("cancelled",),
    ("backprop", 2, 0.5): ("succeeded", [(0, 0.7), (100, INF), (200, 0.2)], 0.75),
    ("backprop", 3, 0.5): ("succeeded", [(0, 0.7), (100, 0.049), (200, 0.04)], 1.0),
}
KNOWN_SPEC = SweepSpec(variants=["nn", "backprop"], seeds=[1, 2, 3], lrs=[1.0, 0.5], steps=201, log_every=100)


def write_known_sweep(url: str, spec: SweepSpec = KNOWN_SPEC) -> str:
    """Create the sweep and drive each job to its KNOWN_SWEEP outcome; returns the sweep id."""
    ensure_schema(url)
    sweep = create_sweep(url, spec)
    jobs = queries.sweep_status(url, sweep.sweep_id)["jobs"]
    for job in jobs:
        plan = KNOWN_SWEEP[(job["variant"], job["seed"], job["lr"])]
        state = plan[0]
        if state == "queued":
            continue
        if state == "cancelled":
            control.cancel(url, job["id"])
            continue
        claim = claim_job(url, job["id"], "test-worker", lease_seconds=60, max_attempts=3)
        assert claim is not None
        costs = plan[1]
        assert isinstance(costs, list)
        if state == "failed":
            record_costs(url, job["id"], claim.attempt, costs, lease_seconds=60)
            assert fail_job(url, job["id"], claim.attempt, "RuntimeError: planned failure")
            continue
        accuracy = plan[2]
        assert isinstance(accuracy, float)
        outcome = Outcome(
            unwritten_costs=costs,
            final_cost=costs[-1][1],
            hypothesis=[0.1, 0.9, 0.9, 0.1],
            predicted=[0.0, 1.0, 1.0, 0.0],
            accuracy=accuracy,
            device_name="cpu",
            cpu_capability="test",
            torch_version="test",
        )
        finish_job(url, job["id"], claim.attempt, outcome)
    return sweep.sweep_id


def run_main(
    args: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str, str]:
    """The real entry point in this process; XORJOBS_* comes from the test's environment."""
    monkeypatch.setattr(sys, "argv", ["xorjobs", *args])
    get_settings.cache_clear()
    with pytest.raises(SystemExit) as exited:
        main()
    captured = capsys.readouterr()
    return int(exited.value.code or 0), captured.out, captured.err


# --- specs the contract refuses, with the field each error names (spec tests and API tests) ---------

BAD_SPECS = [
    ({"variants": ["mlp"]}, "variants.0"),
    ({"variants": []}, "variants"),
    ({"variants": ["nn", "nn"]}, "variants"),
    ({"seeds": [-1]}, "seeds.0"),
    ({"seeds": [2**63]}, "seeds.0"),
    ({"seeds": [1.5]}, "seeds.0"),
    ({"seeds": [True]}, "seeds.0"),
    ({"seeds": ["7"]}, "seeds.0"),
    ({"seeds": [3, 3]}, "seeds"),
    ({"lrs": [0]}, "lrs.0"),
    ({"lrs": [-0.1]}, "lrs.0"),
    ({"lrs": [1000.5]}, "lrs.0"),
    ({"lrs": [math.nan]}, "lrs.0"),
    ({"lrs": [math.inf]}, "lrs.0"),
    ({"lrs": [False]}, "lrs.0"),
    ({"lrs": ["0.1"]}, "lrs.0"),
    ({"lrs": [0.1, 0.1]}, "lrs"),
    ({"steps": 0}, "steps"),
    ({"steps": 10**12}, "steps"),
    ({"steps": 10.0}, "steps"),
    ({"steps": True}, "steps"),
    ({"log_every": 0}, "log_every"),
    ({"steps": 50, "log_every": 100}, "log_every"),
    ({"device": "tpu"}, "device"),
    ({"name": "x" * 201}, "name"),
    ({"colour": "red"}, "colour"),
    ({"stop_below": 0}, "stop_below"),
    ({"stop_below": -0.5}, "stop_below"),
    ({"stop_below": math.inf}, "stop_below"),
    ({"stop_below": "0.05"}, "stop_below"),
    ({"stop_below": True}, "stop_below"),
    ({"stop_when_solved": 1}, "stop_when_solved"),
    ({"stop_when_solved": "yes"}, "stop_when_solved"),
    ({"seeds": list(range(5000)), "lrs": [0.1, 0.2, 0.3]}, "sweep"),
]


FIGURES_FILE = Path(__file__).resolve().parents[1] / "test-artifacts" / "fault_figures.json"
"""Figures the fault tests measure (recovery times and the like), for the README and the issue notes."""


def run_at_once(*actions: Callable[[], object]) -> list[BaseException]:
    """Start each action in its own thread at the same moment (a barrier) and wait for all of them; the
    errors they raised, to assert on (the lock-order races: two store writers on the same rows)."""
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(actions))

    def run(action: Callable[[], object]) -> None:
        barrier.wait()
        try:
            action()
        except BaseException as error:  # recorded, then asserted by the caller
            errors.append(error)

    threads = [threading.Thread(target=run, args=(action,)) for action in actions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return errors


def record_figure(name: str, value: object) -> None:
    FIGURES_FILE.parent.mkdir(exist_ok=True)
    figures = json.loads(FIGURES_FILE.read_text()) if FIGURES_FILE.exists() else {}
    figures[name] = value
    FIGURES_FILE.write_text(json.dumps(figures, indent=2, sort_keys=True))


# --- workers and a submitter on one store and one broker (fault and packing tests) -----------------

FAST_TIMINGS = {
    "XORJOBS_LEASE_SECONDS": "3",
    "XORJOBS_HEARTBEAT_SECONDS": "0.5",
    "XORJOBS_REAP_INTERVAL_SECONDS": "0.5",
    "XORJOBS_PROGRESS_SECONDS": "0.3",
    "XORJOBS_MAX_ATTEMPTS": "3",
    # Solo training: these tests are about single jobs in the queue (packed, a sweep's jobs would all
    # run at once); tests/test_packing.py covers faults during a pack.
    "XORJOBS_PACK_SIZE": "1",
}


class Cluster:
    """Workers and a submitter sharing one store and one broker, as on several machines."""

    def __init__(self, tmp_path: Path, database_url: str, broker_url: str, **extra_env: str) -> None:
        self.tmp_path = tmp_path
        self.url = database_url
        self.env = clean_env(
            XORJOBS_HOME=str(tmp_path / "home"),
            XORJOBS_DATABASE_URL=database_url,
            XORJOBS_BROKER_URL=broker_url,
            XORJOBS_TEST_FAULTS="1",
            **{**FAST_TIMINGS, **extra_env},
        )
        self.settings = Settings(
            home=tmp_path / "home", database_url=database_url, broker_url=broker_url, max_attempts=3
        )
        upgrade(database_url)  # as `xorjobs db upgrade` would, before any worker starts
        self.service = Service(self.settings).ready()
        self.workers: list[ServiceProcess] = []

    def start_worker(self, name: str, concurrency: int = 1) -> ServiceProcess:
        worker = start_worker(self.env, self.tmp_path, name=name, concurrency=concurrency)
        self.workers.append(worker)
        return worker

    def submit(self, **fields: object) -> tuple[str, list[str]]:
        result = self.service.submit(validate_spec({"variants": ["nn"], "log_every": 100, **fields}))
        return result["sweep_id"], [job["id"] for job in result["jobs"]]

    def job(self, job_id: str) -> Json:
        return queries.job_detail(self.url, job_id)

    def logged_costs(self, job_id: str) -> list[tuple[int, int]]:
        """``(step, attempt that wrote it)`` of every logged cost the store holds for the job."""
        with read_session(self.url) as session:
            row = session.execute(
                select(CostCurve.attempt, CostCurve.curve).where(CostCurve.job_id == job_id)
            ).first()
        return [] if row is None else [(step, row.attempt) for step, _ in decode_curve(row.curve)]

    def wait_for_costs(self, job_id: str, timeout: float = 120) -> Json:
        """Wait until the job is running and has written some costs: it is mid-job."""
        wait_until(lambda: len(self.logged_costs(job_id)) >= 2, timeout, f"{job_id} to be mid-job")
        return self.job(job_id)

    def wait_finished(self, sweep_id: str, timeout: float = 240) -> Json:
        def finished() -> Json | None:
            status = queries.sweep_status(self.url, sweep_id)
            counts = status["counts"]
            return status if counts["queued"] + counts["running"] == 0 else None

        return wait_until(finished, timeout, f"sweep {sweep_id} to finish", interval=0.25)

    def holder(self, job_id: str) -> ServiceProcess:
        worker_name = str(self.job(job_id)["worker"])
        node = worker_name.rpartition("/")[0]
        for worker in self.workers:
            if node.startswith(f"cpu-{worker.pid}@"):
                return worker
        raise AssertionError(f"no worker of this test holds {job_id} ({worker_name})")

    def check_invariants(self, sweep_id: str, bit_exact_sample: int | None = None) -> Json:
        """Check every job's invariants; compare ``bit_exact_sample`` of them (all by default) with the
        seed's loop run live (long jobs make the live run the slow part of a test)."""
        results = queries.sweep_results(self.url, sweep_id)
        to_compare = {job["id"] for job in results["jobs"][:bit_exact_sample]}
        for job in results["jobs"]:
            assert job["state"] in ("succeeded", "failed", "cancelled"), job
            if job["state"] != "succeeded":
                continue
            rows = self.logged_costs(job["id"])
            logged = list(range(0, job.get("steps_trained") or job["steps"], job["log_every"]))
            assert [step for step, _ in rows] == logged  # each logged step once, in order
            assert {attempt for _, attempt in rows} == {job["attempt"]}  # all by the final attempt
            if job["id"] in to_compare:
                check_job_against_the_seed_loop(job)
        return results

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()


def pool_children(worker: ServiceProcess) -> list[psutil.Process]:
    """The prefork pool's training processes (forked: same command line as the worker; the spawned
    recovery process and multiprocessing's resource tracker have their own)."""
    main = psutil.Process(worker.pid)
    return [child for child in main.children() if child.cmdline() == main.cmdline()]


def broker_messages(broker_url: str, queue: str = "cpu") -> int:
    """Messages on a Redis broker for ``queue``: waiting on its list plus delivered and not yet acked."""
    import redis

    client = redis.Redis.from_url(broker_url)
    return int(client.llen(queue)) + int(client.hlen("unacked"))


def pause_outside_the_write_lock(process_group: int, url: str) -> None:
    """SIGSTOP ``process_group``, on SQLite only at a moment none of it holds the store's write lock.

    SQLite has one writer at a time: a process stopped inside a write transaction blocks every other
    writer until it is continued (the other worker's claim, the reaper and the test itself then fail
    with "database is locked" after the 30 s busy timeout). A real pause can land there too; these tests
    are about what a paused attempt can write after waking, so they pause it between transactions."""
    for _ in range(200):
        os.killpg(process_group, signal.SIGSTOP)
        if not url.startswith("sqlite:///") or _write_lock_is_free(url.removeprefix("sqlite:///")):
            return
        os.killpg(process_group, signal.SIGCONT)
        time.sleep(0.02)
    raise AssertionError(f"process group {process_group} held the SQLite write lock at every try")


def _write_lock_is_free(database: str) -> bool:
    connection = sqlite3.connect(database, timeout=0.5, isolation_level=None)
    try:
        connection.execute("BEGIN IMMEDIATE")
        connection.execute("ROLLBACK")
        return True
    except sqlite3.OperationalError:
        return False
    finally:
        connection.close()
