"""``status --watch``: the status table redrawn in place under the sweep's progress until it finishes."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from xorjobs.cli.progress_view import SweepProgress
from xorjobs.defaults import finished_count


def watch_status(
    fetch_status: Callable[[], dict[str, Any]],
    console: Console,
    jobs_table: Callable[[dict[str, Any]], Table],
    interval: float = 1.0,
) -> dict[str, Any]:
    """Redraw the status table in place, under the progress view ``run`` shows too (same bar, same
    ETA), until every job is finished; returns the last status. The caller prints once instead when
    stdout is no terminal."""
    status = fetch_status()
    progress = SweepProgress(console)

    def frame(current: dict[str, Any]) -> Group:
        return Group(progress.view(current), jobs_table(current))

    with Live(frame(status), console=console, auto_refresh=False, transient=False) as live:
        while finished_count(status["counts"]) < sum(status["counts"].values()):
            time.sleep(interval)
            status = fetch_status()
            live.update(frame(status), refresh=True)
    return status
