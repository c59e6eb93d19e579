"""The client's ``wait(progress=True)``: a progress bar on stderr, in a terminal or a notebook."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from xorjobs.defaults import finished_count

Status = dict[str, Any]


def poll_until_done(
    fetch_status: Callable[[], Status],
    *,
    progress: bool,
    interval: float,
    timeout: float | None = None,
) -> Status:
    """Poll until every job of the sweep is finished; returns the last status (TimeoutError after
    ``timeout`` seconds, the sweep left as it is)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    console = Console(stderr=True)
    status = fetch_status()
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[counts]}"),
        TimeElapsedColumn(),
        console=console,
        disable=not progress,
    ) as bar:
        task = bar.add_task(str(status["sweep_id"]), total=sum(status["counts"].values()), counts="")
        while True:
            counts = status["counts"]
            # Whole state names, as the CLI's progress view writes them ("queu=1 runn=99" was cryptic).
            summary = ", ".join(f"{state} {n}" for state, n in counts.items() if n)
            bar.update(task, completed=finished_count(counts), counts=summary)
            if finished_count(counts) >= sum(counts.values()):
                return status
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(
                    f"sweep {status['sweep_id']} is not finished after {timeout:g} s: {summary}"
                )
            time.sleep(interval)
            status = fetch_status()
