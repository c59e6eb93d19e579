"""How the CLI prints: rich tables for people; JSON and CSV (no colour) for scripts."""

from __future__ import annotations

import csv
import json
import math
import sys
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table as Table

from xorjobs.spec import first_control_character
from xorjobs.store.floats import json_safe

# Wide when piped (rich would assume 80 columns and truncate ids); the terminal's width otherwise.
stdout = Console(highlight=False, width=None if sys.stdout.isatty() else 200)
stderr = Console(stderr=True, highlight=False)

STATE_STYLES = {
    "queued": "yellow",
    "running": "cyan",
    "succeeded": "green",
    "failed": "red",
    "cancelled": "magenta",
}


def safe(value: object, *, multiline: bool = False) -> str:
    """Text from a user or the store, ready for a rich print: markup escaped (a name ``[/]`` or ``[bold]``
    prints as written) and control characters shown as ``\\x1b`` instead of acting on the terminal (names
    stored before such names were refused, error texts, ids typed on the command line). ``multiline``
    keeps newlines (a stored traceback)."""
    text = str(value)
    if first_control_character(text) is not None:
        text = "".join(_visible(character, multiline) for character in text)
    return escape(text)


def _visible(character: str, multiline: bool) -> str:
    if first_control_character(character) is None or (multiline and character == "\n"):
        return character
    code = ord(character)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def print_json(payload: Any) -> None:
    sys.stdout.write(json.dumps(json_safe(payload), indent=2, allow_nan=False) + "\n")


def number(value: Any, digits: int = 6) -> str:
    """A float for a table cell (also reading the API's "nan"/"inf" strings)."""
    if value is None:
        return "-"
    number_value = float(value)
    if not math.isfinite(number_value):
        return str(number_value)
    return f"{number_value:.{digits}g}"


def counts_line(counts: dict[str, int]) -> str:
    parts = [f"[{STATE_STYLES.get(state, '')}]{state} {count}[/]" for state, count in counts.items() if count]
    return ", ".join(parts) or "no jobs"


JOB_COLUMNS = ("id", "variant", "seed", "lr", "device", "state")
RESULT_COLUMNS = (*JOB_COLUMNS, "final_cost", "accuracy")
RESULT_CSV_COLUMNS = (
    *JOB_COLUMNS,
    "steps",
    "log_every",
    "final_cost",
    "last_logged_cost",
    "accuracy",
    "steps_trained",
    "stopped_at_step",
    "stop_reason",
)
"""``results --csv``: the table's columns and what tells its two costs apart (the trained model's, and the
one logged last, a step earlier; ``--json`` has both too), with the steps and interval they belong to."""


def jobs_table(jobs: Sequence[dict[str, Any]], title: str, with_results: bool) -> Table:
    table = Table(title=safe(title), title_justify="left")
    columns: tuple[str, ...] = RESULT_COLUMNS if with_results else (*JOB_COLUMNS, "attempt")
    if with_results and any(job.get("stop_below") is not None or job.get("stop_when_solved") for job in jobs):
        columns = (*columns, "steps_trained")  # early stopping: how far each job trained
    for column in columns:
        table.add_column(
            "steps" if column == "steps_trained" else column,
            justify="right"
            if column in ("seed", "lr", "final_cost", "accuracy", "attempt", "steps_trained")
            else "left",
        )
    for job in jobs:
        cells = []
        for column in columns:
            value = job.get(column)
            if column == "state":
                cells.append(f"[{STATE_STYLES.get(str(value), '')}]{safe(value)}[/]")
            elif column in ("final_cost", "accuracy", "lr"):
                cells.append(number(value))
            else:
                cells.append("-" if value is None else safe(value))
        table.add_row(*cells)
    return table


def write_csv(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> None:
    writer = csv.DictWriter(sys.stdout, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: json_safe(value) for key, value in row.items()})


SUMMARY_ABOVE_JOBS = 20
"""``submit`` prints every job of a sweep up to this many; above, the first few and how to list them all."""


def print_jobs(jobs: Sequence[dict[str, Any]], sweep_id: str) -> None:
    """The jobs ``submit`` queued: all of a small sweep; for a large one, counts, the first rows and the
    command that lists them all (10,000 rows help nobody at submit time)."""
    if len(jobs) <= SUMMARY_ABOVE_JOBS:
        stdout.print(jobs_table(jobs, "", with_results=False))
        return
    shown = jobs[: SUMMARY_ABOVE_JOBS // 2]
    counts: dict[str, int] = {}
    for job in jobs:
        counts[str(job.get("variant"))] = counts.get(str(job.get("variant")), 0) + 1
    per_variant = ", ".join(f"{safe(variant)} {count}" for variant, count in counts.items())
    stdout.print(f"first {len(shown)} of {len(jobs)} jobs ({per_variant}):")
    stdout.print(jobs_table(shown, "", with_results=False))
    stdout.print(f"list them all: xorjobs status {safe(sweep_id)}")
