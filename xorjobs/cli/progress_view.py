"""The progress of a sweep as ``run``, ``submit --wait`` and ``status --watch`` show it: one view, one ETA.

Two lines: the sweep and its state counts (whole state names; the bar said "queu=29 runn=1"), then a bar
that moves with the jobs' logged steps (the store's ``progress``: a running pack counts the part of its
steps it has logged, so the bar no longer stands still for a whole pack), jobs finished, time since the
sweep's first job started and the ETA. Both numbers come from the store, and the ETA and the wording from
``xorjobs.sweep_progress`` (shared with the Python client's bar), so two commands watching one sweep show
the same ETA at the same moment (rich's own estimate was each bar's speed since it opened).
"""

from __future__ import annotations

from typing import Any

from rich.console import Console, Group
from rich.progress import BarColumn, Progress, TaskID, TextColumn
from rich.text import Text

from xorjobs.cli.render import counts_line, safe
from xorjobs.sweep_progress import bar_position, jobs_text, times_text


class SweepProgress:
    """The view of one sweep's progress, redrawn from each new status."""

    def __init__(self, console: Console) -> None:
        self._bar = Progress(
            BarColumn(bar_width=None),
            TextColumn("{task.fields[done]}"),
            TextColumn("{task.fields[times]}"),
            console=console,
            auto_refresh=False,
            expand=True,
        )
        self._task: TaskID | None = None

    def view(self, status: dict[str, Any]) -> Group:
        counts = status["counts"]
        completed, total = bar_position(status)
        done, times = jobs_text(counts), times_text(status)
        if self._task is None:
            self._task = self._bar.add_task("", total=total, done=done, times=times)
        self._bar.update(self._task, total=total, completed=completed, done=done, times=times)
        heading = Text.from_markup(f"sweep {safe(status['sweep_id'])}: {counts_line(counts)}")
        return Group(heading, self._bar)
