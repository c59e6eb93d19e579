"""How the CLI prints: rich tables for people; JSON and CSV (no colour) for scripts."""

from __future__ import annotations

import csv
import json
import math
import sys
from collections.abc import Sequence
from typing import Any

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.measure import Measurement
from rich.table import Table as Table

from xorjobs.spec import first_control_character
from xorjobs.store.floats import json_safe
from xorjobs.sweep_progress import counts_text

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
    """The counts in the one wording (``xorjobs.sweep_progress.counts_text``), each state in its colour."""
    return counts_text(counts, lambda state, part: f"[{STATE_STYLES.get(state, '')}]{part}[/]")


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


# --- tables that fit the terminal (issue 13 §2: at 80 columns names and numbers were cut, rows wrapped) ---


def new_table(title: str) -> Table:
    """A table of the CLI's; fill it with ``add_column``, then pass it through ``fit``."""
    return Table(title=title, title_justify="left")


def add_column(table: Table, header: str, *, right: bool = False, wraps: bool = False) -> None:
    """A column whose cells never wrap nor get cut (ids, numbers, states), or, with ``wraps``, free text
    (a name, a list) that may wrap when nothing else makes the table fit. A header may hold a newline:
    headers are what made the tables too wide, not the cells."""
    table.add_column(header, justify="right" if right else "left", no_wrap=not wraps, overflow="fold")


def fit(table: Table, console: Console | None = None) -> Table:
    """The table as it fits the console: boxed when it fits, else without the box and its padding (two
    spaces between columns, then one), so its cells keep their one line; only ``wraps`` columns wrap
    when even that is too wide. Piped output is 200 columns wide (``stdout``), so it keeps its box."""
    console = stdout if console is None else console
    if fits(table, console):
        return table
    table.box, table.show_edge, table.pad_edge = box.SIMPLE_HEAD, False, False
    for padding in ((0, 1, 0, 0), (0, 0, 0, 0)):
        table.padding = padding
        if _natural_width(table, console) <= console.width:
            break
    return table


def fits(table: Table, console: Console | None = None) -> bool:
    """Whether the table fits the console as it is, no cell wrapped."""
    console = stdout if console is None else console
    return _natural_width(table, console) <= console.width


def _natural_width(table: Table, console: Console) -> int:
    """The width the table takes with no cell wrapped."""
    return Measurement.get(console, console.options.update_width(10_000), table).maximum


JOB_HEADERS = {"final_cost": "final\ncost", "steps_trained": "steps"}
"""Headers shorter than their field's name (the CSV and JSON keep the names)."""


def jobs_table(jobs: Sequence[dict[str, Any]], title: str, with_results: bool) -> Table:
    table = new_table(safe(title))
    columns: tuple[str, ...] = RESULT_COLUMNS if with_results else (*JOB_COLUMNS, "attempt")
    if with_results and any(job.get("stop_below") is not None or job.get("stop_when_solved") for job in jobs):
        columns = (*columns, "steps_trained")  # early stopping: how far each job trained
    for column in columns:
        right = column in ("seed", "lr", "final_cost", "accuracy", "attempt", "steps_trained")
        add_column(table, JOB_HEADERS.get(column, column), right=right)
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
    return fit(table)


def sweeps_table(sweeps: Sequence[dict[str, Any]]) -> Table:
    """``xorjobs sweeps``: a long name or a long list of states wraps in its cell; ids never do."""
    table = new_table("sweeps")
    for column in ("sweep", "name", "created", "jobs", "states"):
        add_column(table, column, right=column == "jobs", wraps=column in ("name", "states"))
    for sweep in sweeps:
        table.add_row(
            safe(sweep["sweep_id"]),
            safe(sweep["name"]) if sweep["name"] else "-",
            str(sweep["created_at"])[:19].replace("T", " "),
            str(sweep["size"]),
            counts_line(sweep["counts"]),
        )
    return fit(table)


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
