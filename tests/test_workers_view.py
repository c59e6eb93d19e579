"""The fleet view (issue 13 §4): workers register in the store, beat, show their pack, and turn lost or
stopped; ``xorjobs workers``, ``GET /workers`` and the dashboard show them.

Real ``xorjobs worker`` processes on the real Redis, on SQLite and Postgres; the rule and the table's
escaping are checked on their own without services.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import signal
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from rich.console import Console

from tests.helpers import TOKEN, Cluster
from tests.services import XORJOBS, ServiceProcess, clean_env, free_port, wait_until
from xorjobs.api.main import create_app
from xorjobs.cli import render, workers_command
from xorjobs.defaults import VARIANTS
from xorjobs.settings import Settings
from xorjobs.store.schema import upgrade
from xorjobs.store.workers import (
    LOST_AFTER_HEARTBEATS,
    WorkerIdentity,
    WorkerState,
    list_workers,
    register_worker,
    state_of,
)

HEARTBEAT = 0.5


def rows_of(url: str, include_stopped: bool = True) -> dict[str, dict[str, Any]]:
    return {row["node"]: row for row in list_workers(url, include_stopped)}


def node_of(pid: int) -> str:
    return f"cpu-{pid}@{socket.gethostname()}"


def cli_workers(env: dict[str, str], cwd: Path, *args: str) -> Any:
    import subprocess

    done = subprocess.run(
        [XORJOBS, "workers", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout) if "--json" in args else done.stdout


# --- the rule, without services ---------------------------------------------------------------------


def test_a_worker_is_lost_past_three_of_its_own_intervals_and_stopped_once_it_said_so() -> None:
    now = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    beat = now - dt.timedelta(seconds=LOST_AFTER_HEARTBEATS * 5 - 0.1)
    assert state_of(beat, None, 5.0, now) is WorkerState.LIVE
    assert state_of(beat - dt.timedelta(seconds=0.2), None, 5.0, now) is WorkerState.LOST
    # Its own interval decides: the same silence is live for a worker that promised to beat slower.
    assert state_of(beat - dt.timedelta(seconds=0.2), None, 6.0, now) is WorkerState.LIVE
    assert state_of(now - dt.timedelta(days=1), now, 5.0, now) is WorkerState.STOPPED


def test_the_table_escapes_what_a_host_or_node_name_carries(tmp_path: Path, monkeypatch: Any) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    upgrade(url)
    register_worker(
        url,
        WorkerIdentity(
            instance_id="a" * 32,
            node="[bold red]boom[/]\x1b[2J@h",
            host="[/]\x07host",
            pid=7,
            scope=None,
            queues=("cpu",),
            engines=dict.fromkeys(VARIANTS, "solo"),
            version="x",
            heartbeat_seconds=5.0,
        ),
    )
    buffer = io.StringIO()
    monkeypatch.setattr(render, "stdout", Console(file=buffer, width=300, highlight=False))
    monkeypatch.setenv("XORJOBS_DATABASE_URL", url)
    from xorjobs.settings import get_settings

    get_settings.cache_clear()
    workers_command.workers()
    printed = buffer.getvalue()
    assert "[bold red]boom[/]\\x1b[2J@h" in printed and "[/]\\x07host" in printed, printed
    assert "\x1b" not in printed and "\x07" not in printed
    assert "solo" in printed and "live" in printed


# --- real workers -------------------------------------------------------------------------------------


def wait_for_row(
    url: str, node: str, condition: Callable[[dict[str, Any]], bool], what: str
) -> dict[str, Any]:
    def seen() -> dict[str, Any] | None:
        row = rows_of(url).get(node)
        return row if row is not None and condition(row) else None

    return wait_until(seen, 60, what, interval=0.2)


@pytest.mark.redis
def test_a_worker_registers_beats_shows_its_pack_and_is_stopped_at_a_clean_exit(
    tmp_path: Path, redis_url: str, database_url: str
) -> None:
    cluster = Cluster(tmp_path, database_url, redis_url, XORJOBS_PACK_SIZE="8")
    try:
        worker = cluster.start_worker("w1", concurrency=1)
        node = node_of(worker.pid)
        row = wait_for_row(database_url, node, lambda row: row["state"] == "live", "the worker's row")
        assert row["host"] == socket.gethostname() and row["pid"] == worker.pid
        assert row["queues"] == ["cpu"] and row["heartbeat_seconds"] == HEARTBEAT
        assert set(row["engines"]) == set(VARIANTS) and row["engines"]["backprop"] in ("exact", "solo")
        assert row["current"] == [] and row["stopped_at"] is None and row["scope"]
        first_beat = row["last_heartbeat"]
        wait_for_row(database_url, node, lambda row: row["last_heartbeat"] > first_beat, "a later heartbeat")

        # A pack of 4 jobs in progress shows as its leader and its size.
        # wide_deep at the most steps: the pack lasts ~30 s even natively (it is cancelled below).
        sweep_id, job_ids = cluster.submit(
            variants=["wide_deep"], seeds=[1, 2, 3, 4], steps=1_000_000, log_every=10_000
        )
        busy = wait_for_row(
            database_url, node, lambda row: sum(p["size"] for p in row["current"]) == 4, "the pack on the row"
        )
        assert len(busy["current"]) == 1 and busy["current"][0]["leader"] in job_ids

        # The CLI (the real command, in-process on the store) and the API (with its token) say the same.
        env = clean_env(XORJOBS_DATABASE_URL=database_url, XORJOBS_HOME=str(tmp_path / "home"))
        listed = cli_workers(env, tmp_path, "--json")["workers"]
        assert [item["instance_id"] for item in listed] == [row["instance_id"]]
        assert listed[0]["current"][0]["size"] == 4
        with TestClient(create_app(Settings(database_url=database_url, api_token=TOKEN))) as client:
            assert client.get("/workers").status_code == 401
            answer = client.get("/workers", headers={"Authorization": f"Bearer {TOKEN}"})
            assert answer.status_code == 200
            assert [item["instance_id"] for item in answer.json()["workers"]] == [row["instance_id"]]

        cluster.service.cancel(sweep_id)
        worker.stop()
        stopped = rows_of(database_url)[node]
        assert stopped["state"] == "stopped" and stopped["stopped_at"] is not None, stopped
        settings = Settings(database_url=database_url)
        assert workers_command.fetch_workers(settings, include_stopped=False)["workers"] == []
        everyone = workers_command.fetch_workers(settings, include_stopped=True)["workers"]
        assert [item["node"] for item in everyone] == [node]
    finally:
        cluster.stop()


@pytest.mark.redis
def test_a_killed_worker_shows_as_lost_while_another_stays_live(
    tmp_path: Path, redis_url: str, sqlite_url: str
) -> None:
    cluster = Cluster(tmp_path, sqlite_url, redis_url)
    # Both start at once (a worker takes seconds to come up on a loaded machine).
    first, second = (
        ServiceProcess([XORJOBS, "worker", "--concurrency", "1"], cluster.env, tmp_path / f"{name}.log")
        for name in ("first", "second")
    )
    cluster.workers += [first, second]
    port = free_port()
    api = ServiceProcess(
        [XORJOBS, "api", "--port", str(port)],
        {**cluster.env, "XORJOBS_API_TOKEN": TOKEN},
        tmp_path / "api.log",
    )
    try:
        first_row, second_row = (
            wait_for_row(sqlite_url, node_of(worker.pid), lambda row: row["state"] == "live", "live")
            for worker in (first, second)
        )
        assert first_row["instance_id"] != second_row["instance_id"]
        os.killpg(first.pid, signal.SIGKILL)  # the main process, its pool and its recovery process
        lost = wait_for_row(sqlite_url, node_of(first.pid), lambda row: row["state"] == "lost", "lost")
        assert lost["seconds_since_heartbeat"] > LOST_AFTER_HEARTBEATS * HEARTBEAT
        assert lost["stopped_at"] is None
        assert rows_of(sqlite_url)[node_of(second.pid)]["state"] == "live"

        # The CLI over HTTP (XORJOBS_API_URL, with the token) shows the same two states.
        api.wait_for_log("Application startup complete", timeout=60)
        env = clean_env(XORJOBS_API_URL=f"http://127.0.0.1:{port}", XORJOBS_API_TOKEN=TOKEN)
        states = {item["node"]: item["state"] for item in cli_workers(env, tmp_path, "--json")["workers"]}
        assert states == {node_of(first.pid): "lost", node_of(second.pid): "live"}
    finally:
        api.stop()
        cluster.stop()
