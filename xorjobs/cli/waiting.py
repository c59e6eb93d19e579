"""Waiting for a sweep: a progress bar on stderr (so ``--json`` on stdout stays clean)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import typer
from rich.live import Live

from xorjobs.cli.progress_view import SweepProgress
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
    """Poll until every job is terminal, showing the sweep's progress on stderr when it is a terminal
    (the view ``status --watch`` shows too); returns the last status."""
    status = fetch_status()

    def done(current: dict[str, Any]) -> bool:
        return bool(finished_count(current["counts"]) >= sum(current["counts"].values()))

    if not stderr.is_terminal:
        while not done(status):
            time.sleep(interval)
            status = fetch_status()
        return status
    progress = SweepProgress(stderr)
    with Live(progress.view(status), console=stderr, auto_refresh=False, transient=False) as live:
        while not done(status):
            time.sleep(interval)
            status = fetch_status()
            live.update(progress.view(status), refresh=True)
    return status
