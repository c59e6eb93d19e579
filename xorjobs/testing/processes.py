"""Real xorjobs processes for tests, benchmarks and scripts: a worker, an API, each started as users do.

Why inside the package (``xorjobs.testing``) and not in ``tests/``: ``tests/``, ``bench/`` and ``scripts/``
all start the real commands, and a benchmark must not import the test suite (nor the reverse), so
what they share lives here, as Celery ships ``celery.contrib.testing``. Nothing in the API, the workers
or the CLI imports this package; it needs only the standard library (the store only inside
``upgrade_store``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

XORJOBS = str(Path(sys.executable).with_name("xorjobs"))
"""The ``xorjobs`` console script of the running interpreter's environment."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_env(**overrides: str) -> dict[str, str]:
    """The test process's environment without any XORJOBS_* setting, plus ``overrides``."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("XORJOBS_")}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(overrides)
    return env


def wait_until(condition: Callable[[], T | None], timeout: float, what: str, interval: float = 0.2) -> T:
    """Poll ``condition`` until it returns something truthy, and return that; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


class ServiceProcess:
    """A long-running xorjobs command with its output in a log file; stopped politely, then killed."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path, cwd: Path | None = None) -> None:
        self.args = args
        self.log_path = log_path
        self._log = log_path.open("w")
        self.process = subprocess.Popen(
            args, env=env, stdout=self._log, stderr=subprocess.STDOUT, cwd=cwd, start_new_session=True
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, text: str, timeout: float = 60) -> None:
        def seen() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"{self.args} exited with {self.process.returncode}:\n{self.log()[-3000:]}"
                )
            return text in self.log()

        wait_until(seen, timeout, f"{text!r} in the log of {' '.join(self.args)}")

    def stop(self, timeout: float = 15) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        with contextlib.suppress(ProcessLookupError):  # children left behind (a killed worker's pool)
            os.killpg(self.process.pid, signal.SIGKILL)
        self._log.close()


def upgrade_store(env: dict[str, str]) -> str:
    """What the compose `migrate` service does before the API and workers start (they never migrate):
    bring the store that ``env`` names to the head revision; returns its URL."""
    from xorjobs.settings import Settings
    from xorjobs.store.schema import upgrade

    home = Path(env.get("XORJOBS_HOME", ".xorjobs"))
    url = Settings(home=home, database_url=env.get("XORJOBS_DATABASE_URL")).resolved_database_url
    upgrade(url)
    return url


def start_worker(
    env: dict[str, str], tmp_path: Path, name: str = "worker", queue: str = "cpu", concurrency: int = 1
) -> ServiceProcess:
    upgrade_store(env)
    worker = ServiceProcess(
        [XORJOBS, "worker", "--queue", queue, "--concurrency", str(concurrency)],
        env,
        tmp_path / f"{name}.log",
    )
    worker.wait_for_log("ready.", timeout=90)
    return worker


def start_api(env: dict[str, str], tmp_path: Path) -> tuple[ServiceProcess, str]:
    upgrade_store(env)
    port = free_port()
    api = ServiceProcess([XORJOBS, "api", "--port", str(port)], env, tmp_path / "api.log")
    api.wait_for_log("Application startup complete", timeout=60)
    return api, f"http://127.0.0.1:{port}"
