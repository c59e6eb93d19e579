"""The client's ``wait(progress=True)``: a progress bar on stderr, in a terminal or a notebook."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn

from xorjobs.defaults import finished_count
from xorjobs.sweep_progress import bar_position, counts_text, jobs_text, times_text

Status = dict[str, Any]


def poll_until_done(
    fetch_status: Callable[[], Status],
    *,
    progress: bool,
    interval: float,
    timeout: float | None = None,
    console: Console | None = None,
) -> Status:
    """Poll until every job of the sweep is finished; returns the last status (TimeoutError after
    ``timeout`` seconds, the sweep left as it is).

    The bar says what the CLI's progress view says (``xorjobs.sweep_progress``): it moves with the jobs'
    logged steps, and the counts, the elapsed time and the ETA are the store's, by the one rule."""
    deadline = None if timeout is None else time.monotonic() + timeout
    status = fetch_status()
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[jobs]}", markup=False),
        TextColumn("{task.fields[times]}", markup=False),
        TextColumn("{task.fields[counts]}", markup=False),
        console=console or Console(stderr=True),
        disable=not progress,
    ) as bar:
        task = bar.add_task(str(status["sweep_id"]), total=None, jobs="", times="", counts="")
        while True:
            counts = status["counts"]
            completed, total = bar_position(status)
            summary = counts_text(counts)
            bar.update(
                task,
                total=total,
                completed=completed,
                jobs=jobs_text(counts),
                times=times_text(status),
                counts=summary,
            )
            bar.refresh()  # each status as it comes (a notebook's output, too), not at the next auto-refresh
            if finished_count(counts) >= sum(counts.values()):
                return status
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(
                    f"sweep {status['sweep_id']} is not finished after {timeout:g} s: {summary}"
                )
            time.sleep(interval)
            status = fetch_status()
