"""``xorjobs verify`` and ``POST /jobs/{id}/verify`` (issue 12 §6): a stored job re-run solo, compared bit
for bit; the comparison itself as a pure function; the API's route through a real worker process."""

from __future__ import annotations

import json
import math
import sqlite3
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx2
import pytest

from tests.helpers import Cluster, run_main
from tests.services import XORJOBS, start_api, wait_until
from xorjobs.client import Client
from xorjobs.store.curve_codec import decode_curve, encode_curve
from xorjobs.store.workers import WorkerIdentity, list_workers, register_worker
from xorjobs.verification import compare_costs, provenance_note, verify_report

# --- the comparison ---------------------------------------------------------------------------------


def test_identical_costs_compare_as_identical() -> None:
    result = compare_costs([(0, 0.7), (100, 0.5)], [(0, 0.7), (100, 0.5)])
    assert result.identical and result.steps_compared == 2
    assert (result.max_abs_diff, result.max_rel_diff, result.first_differing_step) == (0.0, 0.0, None)


def test_the_first_differing_step_and_the_largest_differences() -> None:
    stored = [(0, 0.7), (100, 0.5), (200, 0.25), (300, 0.1)]
    rerun = [(0, 0.7), (100, 0.5 + 1e-8), (200, 0.2), (300, 0.1)]
    result = compare_costs(stored, rerun)
    assert result.first_differing_step == 100 and not result.identical
    assert result.max_abs_diff == pytest.approx(0.05)
    assert result.max_rel_diff == pytest.approx(0.05 / 0.25)


def test_nan_against_a_number_is_infinitely_far_and_nan_against_nan_is_the_same() -> None:
    assert compare_costs([(0, math.nan)], [(0, math.nan)]).identical
    far = compare_costs([(0, 0.5), (100, math.nan)], [(0, 0.5), (100, 0.3)])
    assert far.first_differing_step == 100 and far.max_abs_diff == math.inf == far.max_rel_diff


def test_a_step_logged_by_one_side_only_differs() -> None:
    result = compare_costs([(0, 0.7), (100, 0.5)], [(0, 0.7)])
    assert result.first_differing_step == 100 and result.max_abs_diff == math.inf


def test_the_report_says_which_cpu_kind_and_torch_made_the_stored_job() -> None:
    job = {
        "id": "job-1",
        "device": "cpu",
        "cpu_capability": "AVX2",
        "torch_version": "2.12.0",
        "hypothesis": [0.1, 0.9, 0.9, 0.1],
        "predicted": [0.0, 1.0, 1.0, 0.0],
        "accuracy": 1.0,
    }
    here = {"device": "cpu", "cpu_capability": "AVX512", "torch_version": "2.13.0"}
    rerun = {"costs": [(0, 0.7)], "hypothesis": [0.1, 0.9, 0.9, 0.2], "predicted": [0.0, 1.0, 1.0, 0.0]}
    report = verify_report(job, [(0, 0.7)], {**rerun, "accuracy": 1.0}, here)
    assert report["costs_identical"] and not report["hypothesis_identical"] and not report["identical"]
    assert report["labels_agree"] and report["accuracy_agrees"]
    assert report["note"] == (
        "the stored job was made on CPU capability AVX2 (this machine: AVX512) and torch 2.12.0 "
        "(this machine: 2.13.0)"
    )
    assert provenance_note(job, {**job, "device": "cpu"}) is None


# --- the command, in-process ------------------------------------------------------------------------


def _tamper(database: Path, sql: str, *parameters: object) -> None:
    with sqlite3.connect(database) as connection:
        assert connection.execute(sql, parameters).rowcount == 1


def _tamper_cost(database: Path, job_id: str, step: int, change: Callable[[float], float]) -> None:
    """Change one stored cost behind xorjobs' back, as a bad disk or a stray UPDATE would."""
    with sqlite3.connect(database) as connection:
        (blob,) = connection.execute("SELECT curve FROM cost_curves WHERE job_id = ?", (job_id,)).fetchone()
        curve = [(at, change(cost) if at == step else cost) for at, cost in decode_curve(blob)]
        assert curve != decode_curve(blob)
    _tamper(database, "UPDATE cost_curves SET curve = ? WHERE job_id = ?", encode_curve(curve), job_id)


def test_verify_a_stored_job_then_a_tampered_cost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_main(
        ["run", "--variant", "nn", "--steps", "301", "--log-every", "100", "--json"], monkeypatch, capsys
    )
    assert code == 0, err
    job_id = json.loads(out)["jobs"][0]["id"]

    code, out, err = run_main(["verify", job_id], monkeypatch, capsys)
    assert code == 0, err
    assert "bit-identical" in out and "max abs diff 0" in out and "first differing step" not in out

    database = tmp_path / "home" / "xorjobs.db"
    _tamper_cost(database, job_id, 200, lambda cost: cost * 1.0000001)
    code, out, err = run_main(["verify", job_id, "--json"], monkeypatch, capsys)
    assert code == 1, err
    report = json.loads(out)
    assert report["identical"] is False and report["first_differing_step"] == 200
    assert 0 < report["max_rel_cost_diff"] < 1e-6 and report["steps_compared"] == 4
    assert report["accuracy_agrees"] and report["labels_agree"] and report["hypothesis_identical"]

    # A job stored by another CPU kind and torch: the report says which.
    _tamper(
        database, "UPDATE jobs SET cpu_capability = 'AVX2', torch_version = '2.12.0' WHERE id = ?", job_id
    )
    code, out, err = run_main(["verify", job_id], monkeypatch, capsys)
    assert code == 1 and "first differing step: 200" in out
    assert "CPU capability AVX2" in out and "torch 2.12.0" in out


def test_verify_refuses_an_unknown_or_unfinished_job(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_main(["submit", "--variant", "nn", "--steps", "10", "--json"], monkeypatch, capsys)
    assert code == 0, err
    job_id = json.loads(out)["jobs"][0]["id"]
    code, _, err = run_main(["verify", job_id], monkeypatch, capsys)
    assert code == 2 and "only a succeeded job has results to verify" in err and "Traceback" not in err
    code, _, err = run_main(["verify", "job-0123456789abcdef"], monkeypatch, capsys)
    assert code == 3 and "no job job-0123456789abcdef" in err


# --- the API route, through a real worker -----------------------------------------------------------


def test_the_api_hands_verify_to_a_worker(sqlite_cluster: Cluster, tmp_path: Path) -> None:
    env = {**sqlite_cluster.env, "XORJOBS_API_TOKEN": "verify-token"}
    auth = {"Authorization": "Bearer verify-token"}
    api, url = start_api(env, tmp_path)
    try:
        # No worker yet: a 504 that says so, quickly (the job is trained below).
        sweep_id, (job_id,) = sqlite_cluster.submit(steps=201)
        client = Client(url, "verify-token")
        with pytest.raises(Exception, match="only a succeeded job"):
            client.verify(job_id)
        unfinished = httpx2.post(f"{url}/jobs/{job_id}/verify", headers=auth, timeout=30)
        assert unfinished.status_code == 422 and unfinished.json()["detail"].startswith(
            f"path.job_id: job {job_id} is queued"
        )  # the API names its own parameter (it said the CLI's JOB_ID); the CLI says JOB_ID, below
        cli_env = {**env, "XORJOBS_API_URL": url, "XORJOBS_HOME": str(tmp_path / "cli-home")}
        refused = subprocess.run([XORJOBS, "verify", job_id], env=cli_env, capture_output=True, text=True)
        assert refused.returncode == 2 and refused.stderr.startswith(f"error: JOB_ID: job {job_id} is queued")
        sqlite_cluster.start_worker("worker")
        sqlite_cluster.wait_finished(sweep_id)
        # The API asks the registry for a live worker; a busy machine trains the job before the worker's
        # recovery process has registered it.
        wait_until(lambda: list_workers(sqlite_cluster.url), 60, "the worker to register")
        report = client.verify(job_id)
        assert report.identical and report.first_differing_step is None and report.steps_compared == 3
        assert report.here["torch_version"] == report.stored["torch_version"]
        # The CLI over HTTP: the same client, the same report.
        verified = subprocess.run(
            [XORJOBS, "verify", job_id, "--json"], env=cli_env, capture_output=True, text=True, timeout=120
        )
        assert verified.returncode == 0, verified.stderr
        assert json.loads(verified.stdout)["identical"] is True

        _tamper_cost(Path(sqlite_cluster.url.removeprefix("sqlite:///")), job_id, 100, lambda _: 0.25)
        tampered = client.verify(job_id)
        assert (
            not tampered.identical and tampered.first_differing_step == 100 and tampered.max_abs_cost_diff > 0
        )

        for worker in sqlite_cluster.workers:
            worker.stop()
        # No live worker of the queue in the registry: a 503 at once, not a silent wait of the timeout.
        started = time.monotonic()
        answer = httpx2.post(f"{url}/jobs/{job_id}/verify", headers=auth, timeout=30)
        assert answer.status_code == 503 and answer.json()["detail"].startswith(
            "no live worker serves queue 'cpu'"
        )
        no_worker = subprocess.run(
            [XORJOBS, "verify", job_id, "--device", "cpu"], env=cli_env, capture_output=True, text=True
        )
        assert no_worker.returncode == 4 and "no live worker serves queue 'cpu'" in no_worker.stderr
        assert time.monotonic() - started < 15  # was 120 s per ask
        # A worker the registry calls live that does not answer (busy, or cut off from the broker): the
        # wait runs its timeout, which the CLI's --timeout sets, and the 504 says how to wait longer.
        register_worker(sqlite_cluster.url, _live_row())
        busy = subprocess.run(
            [XORJOBS, "verify", job_id, "--timeout", "1"], env=cli_env, capture_output=True, text=True
        )
        assert busy.returncode == 4, busy.stderr
        assert "no worker of queue 'cpu' answered within 1 s" in busy.stderr
        assert "--timeout SECONDS" in busy.stderr
    finally:
        api.stop()


def _live_row() -> WorkerIdentity:
    """A registry row of a cpu worker that beats now and serves nothing (no such process)."""
    return WorkerIdentity("f" * 32, "cpu-1@nowhere", "nowhere", 1, None, ("cpu",), {}, "x", 60.0)


# --- the store's side, on SQLite and Postgres ------------------------------------------------------


def test_a_stored_early_stopped_job_verifies_on_each_store(database_url: str) -> None:
    """A job trained and stored as a worker does (here with an early-stopping rule, so the re-run must
    stop where it did), verified from the store; then the verify request's round trip through the
    ``verifications`` table, and a tampered cost row."""
    import torch

    from xorjobs.models.stopping import rule_of
    from xorjobs.models.train import train
    from xorjobs.spec import SweepSpec
    from xorjobs.store import queries, verifications
    from xorjobs.store.claims import claim_job
    from xorjobs.store.costs import write_costs
    from xorjobs.store.engine import write_session
    from xorjobs.store.results import finish_job
    from xorjobs.store.schema import ensure_schema
    from xorjobs.store.sweeps import create_sweep
    from xorjobs.worker.outcomes import outcome_of
    from xorjobs.worker.verify import verify_stored_job

    ensure_schema(database_url)
    spec = SweepSpec(variants=["nn"], seeds=[1], lrs=[1.0], steps=5001, log_every=100, stop_below=0.5)
    job_id = create_sweep(database_url, spec).jobs[0].job_id
    claim = claim_job(database_url, job_id, "test-worker", lease_seconds=60, max_attempts=3)
    assert claim is not None
    result = train("nn", 1, 1.0, 5001, 100, "cpu", stop=rule_of(0.5, False))
    outcome = outcome_of(result, 0, torch.__version__, "nn", "solo", 5001)
    finish_job(database_url, job_id, claim.attempt, outcome)
    stored = queries.job_detail(database_url, job_id)
    assert stored["stopped_at_step"] is not None and stored["stopped_at_step"] < 5000

    report = verify_stored_job(database_url, job_id)
    assert report["identical"] and report["steps_compared"] == stored["stopped_at_step"] // 100 + 1

    verification_id = verifications.request(database_url, job_id, "cpu")
    pending = verifications.pending(database_url, verification_id)
    assert pending is not None and (pending.job_id, pending.device) == (job_id, "cpu")
    assert verifications.answer_of(database_url, verification_id) is None
    assert verifications.answer(database_url, verification_id, report=report)
    assert not verifications.answer(database_url, verification_id, error="late", status=504)  # once
    answer = verifications.answer_of(database_url, verification_id)
    assert answer is not None and answer.report is not None and answer.report["identical"] is True
    assert verifications.pending(database_url, verification_id) is None

    with write_session(database_url) as session:
        write_costs(session, [(job_id, claim.attempt, [(100, 0.25)])])  # step 100's cost overwritten
    tampered = verify_stored_job(database_url, job_id)
    assert not tampered["identical"] and tampered["first_differing_step"] == 100
