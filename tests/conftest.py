"""Shared fixtures. Service fixtures use the real Redis, Postgres and xorjobs processes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.ci import require
from tests.services import (
    REDIS_URL,
    flush_redis,
    fresh_postgres_database,
    postgres_available,
    redis_available,
)
from xorjobs.queue import get_celery
from xorjobs.settings import Settings, get_settings


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-slow", action="store_true", help="also run the long soak tests")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--run-slow"):
        return
    skip_slow = pytest.mark.skip(reason="a long soak run; pass --run-slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip_slow)


@pytest.fixture(autouse=True)
def isolated_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every test gets its own XORJOBS_HOME and no XORJOBS_* leaking in from the environment."""
    import os

    for key in list(os.environ):
        if key.startswith("XORJOBS_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("XORJOBS_HOME", str(tmp_path / "home"))
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
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home")
