"""Shared fixtures. Service fixtures use the real Redis, Postgres and xorjobs processes.

Every test runs with its own XORJOBS_HOME, no XORJOBS_* variable from the environment, and its own
temporary directory as the working directory: Settings (pydantic-settings) reads ``./.env``, so a
developer's ``.env`` (``cp .env.example .env``, as the README says) must never reach a test, neither in
this process nor in the commands it starts, which inherit the working directory.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.ci import require
from tests.helpers import Cluster
from tests.services import (
    REDIS_URL,
    flush_redis,
    free_port,
    fresh_postgres_database,
    postgres_available,
    redis_available,
    wait_until,
)
from xorjobs.queue import get_celery
from xorjobs.settings import get_settings


def pytest_addoption(parser: pytest.Parser) -> None:
    # `make test-all`: the tests marked `slow` (long fault soaks, see the README's "Tests").
    parser.addoption("--run-slow", action="store_true", help="also run the long soak tests (marker: slow)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--run-slow"):
        return
    skip_slow = pytest.mark.skip(reason="a long soak run; pass --run-slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip_slow)


@pytest.fixture(autouse=True)
def isolated_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every test gets its own XORJOBS_HOME, no XORJOBS_* leaking in from the environment, and its
    temporary directory as the working directory, so no ``.env`` is read (see the module docstring)."""
    for key in list(os.environ):
        if key.startswith("XORJOBS_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("XORJOBS_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    get_settings.cache_clear()
    get_celery.cache_clear()
    yield
    get_settings.cache_clear()
    get_celery.cache_clear()


@pytest.fixture
def redis_url() -> Iterator[str]:
    require(redis_available(), f"Redis at {REDIS_URL}")
    flush_redis()
    yield REDIS_URL
    flush_redis()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    require(postgres_available(), "Postgres (XORJOBS_TEST_POSTGRES_URL)")
    with fresh_postgres_database() as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each store test runs on a SQLite file and on a fresh Postgres database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[tuple[str, Callable[[], None]]]:
    """A redis-server of this test's own (no persistence), which the test may restart.

    Each fault test gets its own broker, so a process left over from one test can never consume or
    publish another test's messages.
    """
    require(redis_available(), "redis-server")
    port = free_port()
    args = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, cwd=tmp_path)
    url = f"redis://127.0.0.1:{port}/0"
    holder = {"process": process}

    def restart() -> None:
        holder["process"].kill()  # like a crash: nothing is saved
        holder["process"].wait()
        time.sleep(2)
        holder["process"] = subprocess.Popen(args, stdout=subprocess.DEVNULL, cwd=tmp_path)
        wait_until(lambda: redis_available(url), 20, "redis to come back")

    wait_until(lambda: redis_available(url), 20, "the private redis")
    yield url, restart
    holder["process"].kill()
    holder["process"].wait()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'store.db'}"


@pytest.fixture
def sqlite_cluster(
    tmp_path: Path, sqlite_url: str, private_redis: tuple[str, Callable[[], None]]
) -> Iterator[Cluster]:
    cluster = Cluster(tmp_path, sqlite_url, private_redis[0])
    yield cluster
    cluster.stop()
