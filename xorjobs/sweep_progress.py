"""What a sweep's progress says, wherever it is shown: the CLI's progress view (``run``, ``submit --wait``,
``status --watch``: ``xorjobs.cli.progress_view``) and the Python client's ``wait(progress=True)`` bar
(``xorjobs.client.progress``). One rule for the ETA and one wording for the counts, so every view of one
sweep says the same at the same moment (each rich bar had estimated its own speed since it opened, and the
client wrote ``queu=1 runn=99``).

Pure functions of a sweep status (``GET /sweeps/{id}``, ``Service.status``): its ``counts`` and the store's
``progress`` and ``elapsed_seconds`` (the database's clock). No rich, no typer: the base install's client
and the core import this.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from xorjobs.defaults import finished_count

Status = dict[str, Any]


def eta_seconds(status: Status) -> float | None:
    """Seconds until the sweep is done, at the pace it has kept since its first job started: elapsed ×
    (jobs left / jobs done), in the store's ``progress`` (None before anything is done, or when done)."""
    total = int(sum(status["counts"].values()))
    if status.get("progress") is None or status.get("elapsed_seconds") is None:
        return None
    progress, elapsed = float(status["progress"]), float(status["elapsed_seconds"])
    if not 0 < progress < total:
        return None
    return elapsed * (total - progress) / progress


def clock(seconds: float | None) -> str:
    """``1:02:03``; ``-:--:--`` when not known."""
    if seconds is None:
        return "-:--:--"
    whole = round(seconds)
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"


def times_text(status: Status) -> str:
    """``0:00:19 elapsed, ETA 0:00:43``."""
    return f"{clock(status.get('elapsed_seconds'))} elapsed, ETA {clock(eta_seconds(status))}"


def counts_text(counts: dict[str, int], style: Callable[[str, str], str] | None = None) -> str:
    """The states that have jobs, in whole names: ``queued 1, running 99`` (``no jobs`` when none);
    ``style(state, part)`` dresses each part (the CLI colours it by state)."""
    parts = [(state, f"{state} {count}") for state, count in counts.items() if count]
    return ", ".join(part if style is None else style(state, part) for state, part in parts) or "no jobs"


def jobs_text(counts: dict[str, int]) -> str:
    """``3/12 jobs``: finished of all."""
    return f"{finished_count(counts)}/{sum(counts.values())} jobs"


def bar_position(status: Status) -> tuple[float, int]:
    """(completed, total) for a bar: the store's ``progress`` (a running pack counts the part of its steps
    it has logged, so the bar moves within a pack), or the finished jobs from an API without it."""
    counts = status["counts"]
    total = int(sum(counts.values()))
    progress = status.get("progress")
    return min(float(finished_count(counts) if progress is None else progress), total), total
