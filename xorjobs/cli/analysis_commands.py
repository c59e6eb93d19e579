"""Issue 5's commands: ``compare``, ``export``, ``plot``, ``delete`` and ``prune`` (registered on the app
by ``register``), plus what ``results --by`` and ``status --watch`` render.

Every number comes from the backend (in-process ``Service`` or the API), which computes it with
``xorjobs.analysis``; this module only parses flags and prints.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console, Group
from rich.live import Live
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from xorjobs import analysis
from xorjobs.cli import render
from xorjobs.cli.backends import Backend, backend_for
from xorjobs.defaults import finished_count
from xorjobs.errors import InvalidSpec
from xorjobs.export_formats import ExportFormat
from xorjobs.settings import get_settings

Json = Annotated[bool, typer.Option("--json", help='Print JSON (non-finite numbers as "nan"/"inf")')]
By = Annotated[
    str | None,
    typer.Option(
        "--by", help=f"Group by these job fields, comma-separated: {', '.join(analysis.GROUP_FIELDS)}"
    ),
]
Threshold = Annotated[
    str | None,
    typer.Option(
        "--threshold",
        help="A job converged at its first logged step with cost below this "
        f"\\[default: {analysis.DEFAULT_THRESHOLD}]",
    ),
]
Yes = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation")]


def _backend() -> Backend:
    return backend_for(get_settings())


def parse_threshold(text: str | None) -> float:
    """``--threshold`` as a positive finite float; one-line InvalidSpec naming the flag otherwise."""
    if text is None:
        return analysis.DEFAULT_THRESHOLD
    try:
        value = float(text)
    except ValueError:
        raise InvalidSpec("--threshold", f"{text!r} is not a number") from None
    return analysis.check_threshold(value, "--threshold")


# --- results --by ----------------------------------------------------------------------------------


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.0f}%"


def _mean_std(group: dict[str, Any]) -> str:
    mean, std = group["final_cost_mean"], group["final_cost_std"]
    if mean is None:
        return "-"
    return render.number(mean, 4) + ("" if std is None else f" ± {render.number(std, 2)}")


def _solve_cell(group: dict[str, Any]) -> str:
    interval = group["solve_rate_ci"]
    if interval is None:
        return "-"
    return f"{_percent(group['solve_rate'])} [{_percent(interval[0])}, {_percent(interval[1])}]"


def _group_cells(summary: dict[str, Any], group: dict[str, Any]) -> list[str]:
    return [render.number(group[name]) if name == "lr" else str(group[name]) for name in summary["by"]]


def summary_table(summary: dict[str, Any]) -> Table:
    by_text = ", ".join(summary["by"]) or "all jobs"
    table = Table(title=f"sweep {summary['sweep_id']} by {by_text}", title_justify="left")
    for name in summary["by"]:
        table.add_column(name, justify="right" if name in ("lr", "seed") else "left")
    headers = (
        "jobs",
        "succeeded/failed",
        "solve rate [95% CI]",
        "final cost mean ± std",
        "final cost median",
        f"median steps to cost < {summary['threshold']:g} (converged)",
        "diverged",
    )
    for header in headers:
        table.add_column(header, justify="right")
    for group in summary["groups"]:
        steps = group["steps_to_converge_median"]
        table.add_row(
            *_group_cells(summary, group),
            str(group["jobs"]),
            f"{group['succeeded']}/{group['failed']}",
            _solve_cell(group),
            _mean_std(group),
            render.number(group["final_cost_median"], 4),
            f"{'-' if steps is None else steps} ({group['converged']})",
            str(group["diverged"]),
        )
    return table


def print_summary(summary: dict[str, Any], as_json: bool, as_csv: bool) -> None:
    if as_json:
        render.print_json(summary)
    elif as_csv:
        render.write_csv(analysis.flat_rows(summary), [*summary["by"], *analysis.SUMMARY_STATISTICS])
    else:
        render.stdout.print(summary_table(summary))


# --- status --watch --------------------------------------------------------------------------------


def watch_status(
    fetch_status: Callable[[], dict[str, Any]],
    console: Console,
    jobs_table: Callable[[dict[str, Any]], Table],
    interval: float = 1.0,
) -> dict[str, Any]:
    """Redraw the status table in place, under a progress bar with counts and an ETA, until every job
    is finished; returns the last status. The caller prints once instead when stdout is no terminal."""
    status = fetch_status()
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[counts]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
        auto_refresh=False,
    )
    task = progress.add_task(status["sweep_id"], total=sum(status["counts"].values()), counts="")

    def frame(current: dict[str, Any]) -> Group:
        counts = current["counts"]
        progress.update(task, completed=finished_count(counts), counts=render.counts_line(counts))
        return Group(progress, jobs_table(current))

    with Live(frame(status), console=console, refresh_per_second=4, transient=False) as live:
        while finished_count(status["counts"]) < sum(status["counts"].values()):
            time.sleep(interval)
            status = fetch_status()
            live.update(frame(status), refresh=True)
    return status


# --- compare ---------------------------------------------------------------------------------------


def compare_table(comparison: dict[str, Any]) -> Table:
    table = Table(
        title=f"A = {comparison['sweep_a']}   B = {comparison['sweep_b']}   "
        f"(converged: cost < {comparison['threshold']:g})",
        title_justify="left",
    )
    for name in comparison["by"]:
        table.add_column(name, justify="right" if name in ("lr", "seed") else "left")
    metrics: list[tuple[str, Callable[[dict[str, Any]], str]]] = [
        ("jobs", lambda group: str(group["jobs"])),
        ("solve rate [95% CI]", _solve_cell),
        ("final cost median", lambda group: render.number(group["final_cost_median"], 4)),
        ("median steps", lambda group: str(group["steps_to_converge_median"] or "-")),
        ("diverged", lambda group: str(group["diverged"])),
    ]
    for label, _ in metrics:
        table.add_column(f"{label} A", justify="right")
        table.add_column(f"{label} B", justify="right", style="cyan")
    for row in comparison["groups"]:
        cells = _group_cells(comparison, row)
        for _, cell in metrics:
            cells += [cell(row["a"]) if row["a"] else "·", cell(row["b"]) if row["b"] else "·"]
        table.add_row(*cells)
    return table


def compare(
    sweep_a: Annotated[str, typer.Argument(help="The first sweep (A)")],
    sweep_b: Annotated[str, typer.Argument(help="The second sweep (B)")],
    by: By = "variant,lr",
    threshold: Threshold = None,
    as_json: Json = False,
) -> None:
    """Two sweeps' grouped results side by side (A's groups first; · where a sweep has no such group)."""
    fields = analysis.parse_by(by, "--by")
    limit = parse_threshold(threshold)
    backend = _backend()
    comparison = analysis.compare(
        backend.summary(sweep_a, fields, limit), backend.summary(sweep_b, fields, limit)
    )
    if as_json:
        render.print_json(comparison)
    else:
        render.stdout.print(compare_table(comparison))


# --- export ----------------------------------------------------------------------------------------


def export(
    sweep_id: Annotated[str | None, typer.Argument(help="Sweep id \\[default: the latest sweep]")] = None,
    export_format: Annotated[str, typer.Option("--format", "-f", help="csv or jsonl")] = "csv",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write to this file \\[default: standard output]")
    ] = None,
) -> None:
    """Every cost curve of a sweep as CSV or JSON lines, one row per job and logged step.

    Columns: job_id, variant, seed, lr, device, step, cost (non-finite costs as nan, inf, -inf).
    """
    try:
        chosen = ExportFormat(export_format)
    except ValueError:
        raise InvalidSpec("--format", f"{export_format!r} is not csv or jsonl") from None
    chunks = iter(_backend().export_costs(sweep_id, chosen))
    first = next(chunks, "")  # an unknown sweep fails here, before any file is created
    if output is None:
        _write_all(sys.stdout, first, chunks)
        return
    partial = output.with_name(output.name + ".partial")
    with partial.open("w", encoding="utf-8", newline="") as file:
        _write_all(file, first, chunks)
    os.replace(partial, output)  # a reader never sees half an export
    render.stderr.print(f"wrote {output}")


def _write_all(file: Any, first: str, chunks: Iterator[str]) -> None:
    file.write(first)
    for chunk in chunks:
        file.write(chunk)


# --- plot ------------------------------------------------------------------------------------------


def plot(
    sweep_id: Annotated[str | None, typer.Argument(help="Sweep id \\[default: the latest sweep]")] = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="The PNG file to write")] = Path(
        "curves.png"
    ),
    by: Annotated[
        str,
        typer.Option(
            "--by", help="One colour per group of these fields (median and 25-75% band over the rest)"
        ),
    ] = "variant",
    job: Annotated[str | None, typer.Option("--job", help="Plot this one job's curve instead")] = None,
    threshold: Annotated[
        str | None, typer.Option("--threshold", help="Also draw this cost as a dashed line")
    ] = None,
) -> None:
    """Draw cost curves (log-scale cost against step) as a PNG."""
    backend = _backend()
    if job is not None:
        if sweep_id is not None:
            raise InvalidSpec("--job", "give a sweep id or --job, not both")
        png = backend.job_plot(job)
    else:
        line = None if threshold is None else parse_threshold(threshold)
        png = backend.sweep_plot(sweep_id, analysis.parse_by(by, "--by"), line)
    output.write_bytes(png)
    render.stderr.print(f"wrote {output}")


# --- delete and prune ------------------------------------------------------------------------------


def delete(
    sweep_id: Annotated[str, typer.Argument(help="Sweep id")],
    yes: Yes = False,
    cancel: Annotated[
        bool, typer.Option("--cancel", help="Cancel its queued and running jobs first instead of refusing")
    ] = False,
    as_json: Json = False,
) -> None:
    """Delete a sweep with its jobs and their logged costs (asks first unless --yes)."""
    backend = _backend()
    status = backend.status(sweep_id)
    active = status["counts"].get("queued", 0) + status["counts"].get("running", 0)
    if not yes:
        note = f", cancelling its {active} queued or running job(s)" if active and cancel else ""
        typer.confirm(
            f"delete sweep {sweep_id} and its {len(status['jobs'])} job(s) with their costs{note}?",
            abort=True,
        )
    result = backend.delete_sweep(sweep_id, cancel)
    if as_json:
        render.print_json(result)
        return
    for sweep in result["deleted"]:
        render.stdout.print(_deleted_line(sweep, "deleted"))


def _deleted_line(sweep: dict[str, Any], verb: str) -> str:
    cancelled = f" (cancelled {sweep['cancelled']} first)" if sweep.get("cancelled") else ""
    name = f" ({sweep['name']})" if sweep.get("name") else ""
    counted = f"{sweep['jobs']} job(s), {sweep['costs']} cost row(s)"
    return f"{verb} sweep {sweep['sweep_id']}{name}: {counted}{cancelled}"


def prune(
    older_than: Annotated[
        str, typer.Option("--older-than", help="Age past the sweep's end: 30d, 12h, 90m, 45s or 2w")
    ],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only list what would be deleted")] = False,
    yes: Yes = False,
    as_json: Json = False,
) -> None:
    """Delete the finished sweeps (no job queued or running) that ended longer ago than --older-than."""
    from xorjobs.store.housekeeping import parse_age

    seconds = parse_age(older_than, "--older-than").total_seconds()
    backend = _backend()
    planned = backend.prune(seconds, dry_run=True)
    if not dry_run and planned["deleted"] and not yes:
        for sweep in planned["deleted"]:
            render.stderr.print(_deleted_line(sweep, "will delete"))
        typer.confirm(f"delete these {len(planned['deleted'])} sweep(s)?", abort=True)
    result = planned if dry_run or not planned["deleted"] else backend.prune(seconds, dry_run=False)
    if as_json:
        render.print_json(result)
        return
    for sweep in result["deleted"]:
        render.stdout.print(_deleted_line(sweep, "would delete" if dry_run else "deleted"))
    if not result["deleted"]:
        render.stdout.print(f"no finished sweep ended more than {older_than} ago")


def register(app: typer.Typer) -> None:
    for command in (compare, export, plot, delete, prune):
        app.command()(command)
