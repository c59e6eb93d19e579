"""Ctrl-C in the first seconds of ``xorjobs worker`` (before Celery is ready): one line, exit 130, and
nothing left running or registered live (qa finding F6: a 60-line click.Abort traceback, exit 1)."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from tests.services import XORJOBS, clean_env, upgrade_store
from xorjobs.store.workers import list_workers


@pytest.mark.parametrize("delay", [0.8, 2.0])  # importing torch; then the recovery process is up
def test_ctrl_c_while_the_worker_starts_is_one_line_exit_130(
    delay: float, redis_url: str, tmp_path: Path
) -> None:
    env = clean_env(XORJOBS_DATABASE_URL=f"sqlite:///{tmp_path / 's.db'}", XORJOBS_BROKER_URL=redis_url)
    url = upgrade_store(env)
    worker = subprocess.Popen(
        [XORJOBS, "worker", "--queue", "cpu", "--concurrency", "1"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # SIGINT as a terminal's Ctrl-C sends it (a child of a non-interactive shell may inherit SIG_IGN)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert worker.stderr is not None
    first = worker.stderr.readline()  # "store: ..." is printed just before Celery starts
    assert first.startswith("store:"), first
    time.sleep(delay)  # inside Celery's start, before "ready" (about 3 s on a quiet 2-core machine)
    children = psutil.Process(worker.pid).children(recursive=True)
    worker.send_signal(signal.SIGINT)
    _, err = worker.communicate(timeout=60)
    assert worker.returncode == 130, err
    assert "Traceback" not in err, err
    assert err.strip().splitlines()[-1] == "interrupted: the worker stopped before it was ready", err
    assert not [child for child in children if child.is_running() and child.status() != "zombie"]
    assert [row["state"] for row in list_workers(url) if row["pid"] == worker.pid] == []
