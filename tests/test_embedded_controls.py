"""What `xorjobs run` and `xorjobs retry` do in this process (issue 13 §1): a dead broker fails fast, Ctrl-C
leaves nothing running, an embedded retry trains what it re-queued, and a run trains its own sweep first.

Real `xorjobs` processes on real SQLite files (and the real Redis for the broker that comes back).
"""

from __future__ import annotations

import logging
import subprocess
import time
from pathlib import Path

import pytest

from tests.services import XORJOBS, clean_env, start_worker, wait_until
from xorjobs.settings import Settings
from xorjobs.store import queries
from xorjobs.store.schema import upgrade
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
