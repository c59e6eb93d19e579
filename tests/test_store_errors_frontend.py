"""The store failing under the front ends (issue 14 §4): exit 4 / 503 with one line, and /health sees it.

A full disk is SQLite's own "database or disk is full", reached by capping the store's pages
(``PRAGMA max_page_count``, set on each connection of the process's engine) or, where this test may
mount one, by a real full tmpfs; a held write lock is a second connection's ``BEGIN IMMEDIATE``.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event

from tests.helpers import run_main, write_known_sweep
from tests.services import XORJOBS, clean_env
from xorjobs.api.main import create_app
from xorjobs.settings import Settings
from xorjobs.store.engine import get_engine
from xorjobs.store.schema import upgrade

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
# Enough rows that the insert needs pages the store does not have.
BIG_SWEEP = {"variants": ["nn", "backprop"], "seeds": list(range(300)), "lrs": [1.0, 0.5], "steps": 10}


def cap_pages_at_current_size(url: str) -> None:
    """Every new connection of this process's engine for ``url`` may not grow the file (SQLite then
    answers "database or disk is full" to any write that needs a new page)."""
    engine = get_engine(url)

    @event.listens_for(engine, "connect")
    def _cap(dbapi_connection: Any, _record: object) -> None:
        dbapi_connection.execute("PRAGMA max_page_count=1")  # clamped to the pages it has

    engine.dispose()  # pooled connections were opened without the cap


def assert_one_line_503(response: Any, words: str) -> None:
    assert response.status_code == 503, response.text
    detail = response.json()["detail"]
    assert detail.startswith("the store is unavailable:") and words in detail, detail
    assert "\n" not in detail


@pytest.fixture
def api_settings(tmp_path: Path) -> Settings:
    settings = Settings(home=tmp_path / "home", api_token=TOKEN)
    upgrade(settings.resolved_database_url)
    return settings


def test_a_full_store_is_a_503_with_one_line_and_health_says_full(api_settings: Settings) -> None:
    with TestClient(create_app(api_settings)) as client:
        health = client.get("/health")
        assert health.status_code == 200 and health.json()["database"] == "ok", health.text
        cap_pages_at_current_size(api_settings.resolved_database_url)
        assert_one_line_503(client.post("/sweeps", json=BIG_SWEEP, headers=AUTH), "database or disk is full")
        health = client.get("/health")
        assert health.status_code == 503
        assert health.json() == {"status": "unavailable", "database": "full", "broker": "ok"}


@pytest.fixture
def tiny_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """An 8 MiB tmpfs, mounted for this test (root only: skipped where it cannot be mounted)."""
    folder = tmp_path / "tiny"
    folder.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root (the page-cap test covers the same path)")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(folder)], check=False)
    if mounted.returncode != 0:
        pytest.skip("tmpfs cannot be mounted here (the page-cap test covers the same path)")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def test_a_store_on_a_full_disk_is_a_503_and_health_says_full(tmp_path: Path, tiny_tmpfs: Path) -> None:
    store = f"sqlite:///{tiny_tmpfs / 'store.db'}"
    settings = Settings(home=tmp_path / "home", database_url=store, api_token=TOKEN)
    upgrade(settings.resolved_database_url)
    with TestClient(create_app(settings)) as client:
        # Fill the file system beside the store, as another tenant of the disk would.
        with open(tiny_tmpfs / "filler", "wb", buffering=0) as filler:
            try:
                while True:
                    filler.write(b"\0" * 4096)
            except OSError:
                pass  # no space left
        assert_one_line_503(client.post("/sweeps", json=BIG_SWEEP, headers=AUTH), "database or disk is full")
        assert client.get("/health").json()["database"] == "full"
        (tiny_tmpfs / "filler").unlink()
        assert client.get("/health").json()["database"] == "ok"


def test_the_cli_on_a_full_store_exits_4_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    upgrade(url)
    monkeypatch.setenv("XORJOBS_DATABASE_URL", url)
    monkeypatch.chdir(tmp_path)
    cap_pages_at_current_size(url)
    code, _, err = run_main(
        ["submit", "--variant", "nn,backprop", "--seed", "0-299", "--lr", "1,0.5", "--steps", "10"],
        monkeypatch,
        capsys,
    )
    assert code == 4, err
    assert err.strip().splitlines() == [err.strip()] and "database or disk is full" in err, err
    assert "Traceback" not in err


def test_cancel_under_a_held_write_lock_exits_4_with_one_line(tmp_path: Path) -> None:
    """Waits the store's busy timeout (30 s) out, as the user did (issue 14 §4: 31.5 s, a traceback)."""
    store = tmp_path / "store.db"
    url = f"sqlite:///{store}"
    sweep_id = write_known_sweep(url)
    holder = sqlite3.connect(store, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another writer, paused while it holds the write lock
    try:
        started = time.monotonic()
        result = subprocess.run(
            [XORJOBS, "cancel", sweep_id],
            cwd=tmp_path,
            env=clean_env(XORJOBS_DATABASE_URL=url),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        waited = time.monotonic() - started
    finally:
        holder.rollback()
        holder.close()
    assert result.returncode == 4, result.stderr
    assert result.stderr.strip().splitlines() == ["error: the store is unavailable: database is locked"]
    print(f"cancel gave up after {waited:.1f} s", file=sys.stderr)
