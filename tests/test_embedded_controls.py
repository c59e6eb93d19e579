"""What `xorjobs run` and `xorjobs retry` do in this process (issue 13 §1): a dead broker fails fast, Ctrl-C
leaves nothing running, an embedded retry trains what it re-queued, and a run trains its own sweep first.

Real `xorjobs` processes on real SQLite files (and the real Redis for the broker that comes back).
"""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.helpers import check_job_against_the_seed_loop
from tests.services import XORJOBS, ServiceProcess, clean_env, start_worker, wait_until
from xorjobs.settings import Settings
from xorjobs.spec import SweepSpec
from xorjobs.store import control, queries
from xorjobs.store.claims import claim_job
from xorjobs.store.results import fail_job
from xorjobs.store.schema import ensure_schema, upgrade
from xorjobs.store.sweeps import create_sweep
from xorjobs.worker.recovery import RecoveryLoop

DEAD_BROKER = "redis://xj:hunter2@127.0.0.1:1/0"  # nothing listens on port 1


def run_cli(args: list[str], cwd: Path, timeout: float = 300, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [XORJOBS, *args],
        cwd=cwd,
        env=clean_env(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def store_of(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / '.xorjobs' / 'xorjobs.db'}"


# --- a dead broker ----------------------------------------------------------------------------------


def test_run_with_a_dead_broker_fails_fast_in_one_line_and_a_worker_trains_the_sweep_later(
    tmp_path: Path, redis_url: str
) -> None:
    started = time.monotonic()
    # Before the fix this hung (the in-process Celery consumer retries the broker forever).
    result = run_cli(
        ["run", "--variant", "nn", "--seed", "1,2", "--steps", "50"],
        tmp_path,
        60,
        XORJOBS_BROKER_URL=DEAD_BROKER,
    )
    elapsed = time.monotonic() - started
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 4, result.stderr
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith("error: cannot reach the broker redis://xj:**@127.0.0.1:1/0: "), lines
    assert "hunter2" not in result.stderr
    assert elapsed < 30, elapsed  # about 3 s here: the interpreter, torch's import, one refused connect
    url = store_of(tmp_path)
    sweep_id = queries.latest_sweep_id(url)
    assert sweep_id in lines[0] and "is recorded and stays queued" in lines[0]
    assert queries.sweep_status(url, sweep_id)["counts"]["queued"] == 2

    # The jobs were kept: a worker on a reachable broker publishes (its relay) and trains them.
    env = clean_env(
        XORJOBS_HOME=str(tmp_path / ".xorjobs"),
        XORJOBS_BROKER_URL=redis_url,
        XORJOBS_REAP_INTERVAL_SECONDS="0.5",
    )
    worker = start_worker(env, tmp_path)
    try:
        wait_until(
            lambda: queries.sweep_status(url, sweep_id)["counts"]["succeeded"] == 2,
            timeout=120,
            what="the worker to train the sweep the dead broker never got",
        )
    finally:
        worker.stop()


def test_recovery_passes_that_keep_failing_log_one_line_and_no_traceback(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = f"sqlite:///{tmp_path / 'store.db'}"
    upgrade(store)
    settings = Settings(
        home=tmp_path / "home", database_url=store, broker_url=DEAD_BROKER, reap_interval_seconds=0.05
    )
    from xorjobs.queue import make_celery

    # A store that cannot be reached: every pass fails.
    unreachable = settings.model_copy(
        update={"database_url": "postgresql+psycopg://xj:hunter2@127.0.0.1:1/jobs"}
    )
    loop = RecoveryLoop(unreachable, make_celery(settings))
    with caplog.at_level(logging.INFO, logger="xorjobs.worker.recovery"):
        loop.start()
        time.sleep(1.5)  # ~30 passes
        loop.stop()
        loop.join(5)
    records = [record for record in caplog.records if record.name == "xorjobs.worker.recovery"]
    assert len(records) == 1, [record.getMessage() for record in records]
    assert records[0].exc_info is None and "\n" not in records[0].getMessage()
    assert "recovery pass failed" in records[0].getMessage() and "hunter2" not in records[0].getMessage()


# --- Ctrl-C during a packed run --------------------------------------------------------------------


def test_ctrl_c_during_a_packed_run_leaves_nothing_running_and_reports_counts(tmp_path: Path) -> None:
    # 1,000 nn jobs, packed 512 at a time, long enough that the first pack is mid-training at Ctrl-C.
    args = ["run", "--variant", "nn", "--seed", "1-1000", "--steps", "100000", "--log-every", "1000"]
    run = ServiceProcess([XORJOBS, *args], clean_env(), tmp_path / "run.log", cwd=tmp_path)
    url = store_of(tmp_path)

    def counts() -> dict[str, int]:
        try:
            found: dict[str, int] = queries.sweep_status(url, queries.latest_sweep_id(url))["counts"]
            return found
        except Exception:  # the store is being created
            return {}

    try:
        wait_until(lambda: counts().get("running", 0) > 1, timeout=180, what="a pack to start training")
        time.sleep(1.0)
        run.process.send_signal(signal.SIGINT)
        # Before the fix the worker thread claimed the released pack again with its next message, and the
        # process left it running when the stop's wait ran out.
        assert run.process.wait(60) == 130, run.log()
    finally:
        run.stop()
    after = counts()
    assert after.get("running", 0) == 0 and after["queued"] >= 1, (after, run.log())
    log = run.log()
    assert "Traceback" not in log and "closed database" not in log, log
    line = next(line for line in log.splitlines() if line.startswith("interrupted: "))
    assert "running job(s) handed back to the queue" in line and f"{after['queued']} queued" in line, line
    assert log.count("job-") <= 4, log  # counts and a pack's leader, not 512 ids


# --- the embedded retry trains, and a run trains its own sweep first ------------------------------


def failed_and_cancelled_sweep(url: str) -> str:
    """A sweep of two nn jobs: one failed (a real claim, then failed), one cancelled before it ran."""
    ensure_schema(url)
    sweep = create_sweep(url, SweepSpec(variants=["nn"], seeds=[1, 2], lrs=[1.0], steps=50, log_every=10))
    first, second = (job.job_id for job in sweep.jobs)
    claim = claim_job(url, first, "test-worker", lease_seconds=60, max_attempts=3)
    assert claim is not None and fail_job(url, first, claim.attempt, "RuntimeError: planned failure")
    control.cancel(url, second)
    return sweep.sweep_id


def test_an_embedded_retry_trains_what_it_re_queued_and_prints_the_results(tmp_path: Path) -> None:
    url = store_of(tmp_path)
    sweep_id = failed_and_cancelled_sweep(url)
    result = run_cli(["retry", sweep_id], tmp_path, timeout=180)
    # Before the fix: exit 0 "re-queued 2 job(s)" and nothing trained them.
    assert result.returncode == 0, result.stderr
    assert "re-queued 2 job(s)" in result.stdout and "succeeded 2" in result.stdout, result.stdout
    assert f"re-queued 2 job(s) of sweep {sweep_id}; training them here" in result.stderr, result.stderr
    status = queries.sweep_status(url, sweep_id)
    assert status["counts"]["succeeded"] == 2, status["counts"]
    for job in queries.sweep_results(url, sweep_id)["jobs"]:
        check_job_against_the_seed_loop(job)


def test_an_embedded_run_trains_its_own_sweep_before_older_leftovers(tmp_path: Path) -> None:
    url = store_of(tmp_path)
    ensure_schema(url)
    # Leftovers that would take minutes: before the fix the run trained them first (oldest message first).
    older = create_sweep(
        url, SweepSpec(variants=["wide_deep"], seeds=[1, 2, 3], lrs=[1.0], steps=1_000_000, log_every=1000)
    )
    result = run_cli(
        ["run", "--variant", "nn", "--seed", "1,2", "--steps", "50", "--json"], tmp_path, timeout=120
    )
    assert result.returncode == 0, result.stderr
    sweep_id = json.loads(result.stdout)["sweep_id"]
    assert (
        f"training sweep {sweep_id} (2 job(s)) first; 3 queued job(s) of older sweeps follow" in result.stderr
    ), result.stderr
    assert queries.sweep_status(url, sweep_id)["counts"]["succeeded"] == 2
    assert queries.sweep_status(url, older.sweep_id)["counts"] == {
        **{state: 0 for state in queries.sweep_status(url, older.sweep_id)["counts"]},
        "queued": 3,
    }  # none left running: a leftover this run started is handed back


def test_an_embedded_retry_of_failed_jobs_only_exits_0_when_they_succeed(tmp_path: Path) -> None:
    url = store_of(tmp_path)
    sweep_id = failed_and_cancelled_sweep(url)
    result = run_cli(["retry", sweep_id, "--failed"], tmp_path, timeout=180)
    assert result.returncode == 0, result.stderr  # the cancelled job was not retried: not a failure again
    assert "re-queued 1 job(s)" in result.stdout, result.stdout
    counts = queries.sweep_status(url, sweep_id)["counts"]
    assert counts["succeeded"] == 1 and counts["cancelled"] == 1, counts


def test_an_embedded_retry_on_a_missing_store_exits_3_and_creates_nothing(tmp_path: Path) -> None:
    result = run_cli(["retry", "sw-000000000000"], tmp_path, timeout=120)
    assert result.returncode == 3 and "there is no store at" in result.stderr, result.stderr
    assert not (tmp_path / ".xorjobs").exists()
