"""``status --watch``: the status table redrawn in place under a progress bar until the sweep finishes."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from xorjobs.cli import render
from xorjobs.defaults import finished_count


def watch_status(
    fetch_status: Callable[[], dict[str, Any]],
    console: Console,
    jobs_table: Callable[[dict[str, Any]], Table],
    interval: float = 1.0,
) -> dict[str, Any]:
    """Redraw the status table in place, under a progress bar with counts and an ETA, until every job
    is finished; returns the last status. The caller prints once instead when stdout is no terminal."""
    status = fetch_status()
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[counts]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
        auto_refresh=False,
    )
    task = progress.add_task(status["sweep_id"], total=sum(status["counts"].values()), counts="")

    def frame(current: dict[str, Any]) -> Group:
        counts = current["counts"]
        progress.update(task, completed=finished_count(counts), counts=render.counts_line(counts))
        return Group(progress, jobs_table(current))

    with Live(frame(status), console=console, refresh_per_second=4, transient=False) as live:
        while finished_count(status["counts"]) < sum(status["counts"].values()):
            time.sleep(interval)
            status = fetch_status()
            live.update(frame(status), refresh=True)
    return status
