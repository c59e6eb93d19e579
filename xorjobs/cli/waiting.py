"""Waiting for a sweep: a progress bar on stderr (so ``--json`` on stdout stays clean)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from xorjobs.cli.render import stderr

TERMINAL = ("succeeded", "failed", "cancelled")


def finished(counts: dict[str, int]) -> int:
    return sum(counts.get(state, 0) for state in TERMINAL)


def wait_for_sweep(
    fetch_status: Callable[[], dict[str, Any]],
    interval: float = 0.5,
    should_stop: Callable[[], str | None] = lambda: None,
) -> dict[str, Any]:
    """Poll until every job is terminal; returns the last status. ``should_stop`` may abort with a reason."""
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
            progress.update(task, completed=finished(counts), counts=summary)
            if finished(counts) >= total:
                return status
            reason = should_stop()
            if reason is not None:
                raise RuntimeError(reason)
            time.sleep(interval)
            status = fetch_status()
