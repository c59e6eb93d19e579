"""Tables of grouped results: what ``results --by`` prints, and ``compare``'s two sweeps side by side.

Every number comes from the backend (in-process ``Service`` or the API), which computes it with
``xorjobs.analysis``; this module only lays it out.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.table import Table

from xorjobs import analysis
from xorjobs.cli import render


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
    headers: tuple[str, ...] = (
        "jobs",
        "succeeded/failed",
        "solve rate [95% CI]",
        "final cost mean ± std",
        "final cost median",
        f"median steps to cost < {summary['threshold']:g} (converged)",
        "diverged",
    )
    # Early stopping's columns only for sweeps where a job stopped early (the rest trained all steps).
    stopping = any(group.get("stopped") for group in summary["groups"])
    if stopping:
        headers += ("stopped (median step)", "median steps trained")
    for header in headers:
        table.add_column(header, justify="right")
    for group in summary["groups"]:
        steps = group["steps_to_converge_median"]
        cells = [
            *_group_cells(summary, group),
            str(group["jobs"]),
            f"{group['succeeded']}/{group['failed']}",
            _solve_cell(group),
            _mean_std(group),
            render.number(group["final_cost_median"], 4),
            f"{'-' if steps is None else steps} ({group['converged']})",
            str(group["diverged"]),
        ]
        if stopping:
            cells += [_stopped_cell(group), _or_dash(group.get("steps_trained_median"))]
        table.add_row(*cells)
    return table


def _or_dash(value: Any) -> str:
    return "-" if value is None else str(value)


def _stopped_cell(group: dict[str, Any]) -> str:
    return f"{group.get('stopped', 0)} ({_or_dash(group.get('stopped_at_median'))})"


def print_summary(summary: dict[str, Any], as_json: bool, as_csv: bool) -> None:
    if as_json:
        render.print_json(summary)
    elif as_csv:
        render.write_csv(analysis.flat_rows(summary), [*summary["by"], *analysis.SUMMARY_STATISTICS])
    else:
        render.stdout.print(summary_table(summary))


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
        ("steps trained", lambda group: _or_dash(group.get("steps_trained_median"))),
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
