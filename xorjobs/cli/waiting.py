"""Waiting for a sweep: a progress bar on stderr (so ``--json`` on stdout stays clean)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from xorjobs.cli.render import counts_line, safe, stderr
from xorjobs.defaults import finished_count


def wait_or_leave_running(fetch_status: Callable[[], dict[str, Any]], sweep_id: str) -> dict[str, Any]:
    """Wait for a sweep that workers elsewhere train (``submit --wait``, ``run`` over HTTP): Ctrl-C stops
    the waiting, not the sweep, and says so, with the sweep's id, its counts and how to watch it again
    (exit 130; it was a silent exit)."""
    try:
        return wait_for_sweep(fetch_status)
    except KeyboardInterrupt:
        try:
            counts = f" ({counts_line(fetch_status()['counts'])})"
        except (Exception, KeyboardInterrupt):  # a second Ctrl-C, the API gone: said without the counts
            counts = ""
        sweep = safe(sweep_id)
        stderr.print(
            f"interrupted: stopped waiting; sweep {sweep} goes on{counts}: `xorjobs status --watch {sweep}` "
            f"watches it, `xorjobs cancel {sweep}` stops it",
            soft_wrap=True,
        )
        raise typer.Exit(130) from None


def wait_for_sweep(fetch_status: Callable[[], dict[str, Any]], interval: float = 0.5) -> dict[str, Any]:
    """Poll until every job is terminal; returns the last status."""
    status = fetch_status()
    total = sum(status["counts"].values())
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[counts]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=stderr,
        transient=False,
        disable=not stderr.is_terminal,
    ) as progress:
        task = progress.add_task(status["sweep_id"], total=total, counts="")
        while True:
            counts = status["counts"]
            summary = " ".join(f"{state[:4]}={n}" for state, n in counts.items() if n)
            progress.update(task, completed=finished_count(counts), counts=summary)
            if finished_count(counts) >= total:
                return status
            time.sleep(interval)
            status = fetch_status()
