"""Real services for tests: Redis, Postgres, and xorjobs processes (worker, API) started as users would.

A missing service skips a test locally but fails it when ``CI`` is set, so CI can never pass by
silently skipping what it was meant to test.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

IN_CI = bool(os.environ.get("CI"))
REDIS_URL = os.environ.get("XORJOBS_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
POSTGRES_SERVER_URL = os.environ.get(
    "XORJOBS_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
XORJOBS = str(Path(sys.executable).with_name("xorjobs"))


def require(available: bool, what: str) -> None:
    if not available:
        if IN_CI:
            pytest.fail(f"{what} is not available, and CI must test it")
        pytest.skip(f"{what} is not available locally")


def redis_available(url: str = REDIS_URL) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


def flush_redis(url: str = REDIS_URL) -> None:
    import redis

    redis.Redis.from_url(url).flushdb()


def postgres_available(url: str = POSTGRES_SERVER_URL) -> bool:
    import sqlalchemy

    try:
        engine = sqlalchemy.create_engine(url)
        with engine.connect():
            pass
        engine.dispose()
        return True
    except Exception:
        return False


@contextmanager
def fresh_postgres_database() -> Iterator[str]:
    """A database of its own on the test server, dropped afterwards; yields its SQLAlchemy URL."""
    import sqlalchemy
    from sqlalchemy.engine import make_url

    name = f"xorjobs_test_{uuid.uuid4().hex[:10]}"
    admin = sqlalchemy.create_engine(POSTGRES_SERVER_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(POSTGRES_SERVER_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        from xorjobs.store import engine as store_engine

        for key, engine in list(store_engine._engines.items()):
            if name in key[1]:
                engine.dispose()
                del store_engine._engines[key]
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


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


def wait_until(condition: Callable[[], object], timeout: float, what: str, interval: float = 0.2) -> object:
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
