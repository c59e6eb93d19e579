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


def _mean_std(group: dict[str, Any], short: bool = False) -> str:
    mean, std = group["final_cost_mean"], group["final_cost_std"]
    if mean is None:
        return "-"
    if short:
        return render.number(mean, 3) + ("" if std is None else f"±{render.number(std, 2)}")
    return render.number(mean, 4) + ("" if std is None else f" ± {render.number(std, 2)}")


def _solve_cell(group: dict[str, Any], short: bool = False) -> str:
    interval = group["solve_rate_ci"]
    if interval is None:
        return "-"
    if short:  # 100% [34-100]
        return f"{_percent(group['solve_rate'])} [{100 * interval[0]:.0f}-{100 * interval[1]:.0f}]"
    return f"{_percent(group['solve_rate'])} [{_percent(interval[0])}, {_percent(interval[1])}]"


def _group_cells(summary: dict[str, Any], group: dict[str, Any]) -> list[str]:
    return [render.number(group[name]) if name == "lr" else str(group[name]) for name in summary["by"]]


def summary_table(summary: dict[str, Any]) -> Table:
    """The per-group table; where its full headers do not fit the terminal (80 columns), the same
    numbers under two-line headers and with fewer digits, then ``render.fit``'s narrower layouts."""
    table = _summary_table(summary, short=False)
    if render.fits(table):
        return table
    return render.fit(_summary_table(summary, short=True))


def _summary_table(summary: dict[str, Any], short: bool) -> Table:
    by_text = ", ".join(summary["by"]) or "all jobs"
    threshold = f"{summary['threshold']:g}"
    title = f"sweep {summary['sweep_id']} by {by_text}"
    if short:
        title += f" (solved: accuracy 1.0; steps: median steps to cost < {threshold}, (n) converged)"
    table = render.new_table(title)
    for name in summary["by"]:
        render.add_column(table, name, right=name in ("lr", "seed"))
    headers: tuple[str, ...] = (
        ("jobs", "ok/\nfailed", "solved\n[95% CI]", "cost\nmean±sd", "cost\nmedian", "steps\n(n)", "diverged")
        if short
        else (
            "jobs",
            "succeeded/failed",
            "solve rate [95% CI]",
            "final cost mean ± std",
            "final cost median",
            f"median steps to cost < {threshold} (converged)",
            "diverged",
        )
    )
    # Early stopping's columns only for sweeps where a job stopped early (the rest trained all steps).
    stopping = any(group.get("stopped") for group in summary["groups"])
    if stopping:
        headers += (
            ("stopped\n(median)", "steps\ntrained")
            if short
            else ("stopped (median step)", "median steps trained")
        )
    for header in headers:
        render.add_column(table, header, right=True)
    digits = 3 if short else 4
    for group in summary["groups"]:
        steps = group["steps_to_converge_median"]
        cells = [
            *_group_cells(summary, group),
            str(group["jobs"]),
            f"{group['succeeded']}/{group['failed']}",
            _solve_cell(group, short),
            _mean_std(group, short),
            render.number(group["final_cost_median"], digits),
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


_COMPARED: list[tuple[str, str, Callable[[dict[str, Any]], str]]] = [
    ("jobs", "jobs", lambda group: str(group["jobs"])),
    ("solve rate [95% CI]", "solved\n[95% CI]", lambda group: _solve_cell(group, short=True)),
    ("final cost median", "cost\nmedian", lambda group: render.number(group["final_cost_median"], 4)),
    ("median steps", "median\nsteps", lambda group: str(group["steps_to_converge_median"] or "-")),
    ("diverged", "diverged", lambda group: str(group["diverged"])),
    ("steps trained", "steps\ntrained", lambda group: _or_dash(group.get("steps_trained_median"))),
]
"""compare's figures: the wide table's header, the stacked table's, and the cell."""


def compare_table(comparison: dict[str, Any]) -> Table:
    """A's and B's figures side by side; where that does not fit the terminal (13 columns at 80), each
    group on two lines, A's and B's, under the same columns."""
    table = render.fit(_side_by_side(comparison))
    if render.fits(table):
        return table
    return render.fit(_stacked(comparison))


def _compare_title(comparison: dict[str, Any]) -> str:
    return (
        f"A = {comparison['sweep_a']}   B = {comparison['sweep_b']}   "
        f"(converged: cost < {comparison['threshold']:g})"
    )


def _stacked(comparison: dict[str, Any]) -> Table:
    table = render.new_table(_compare_title(comparison))
    for name in comparison["by"]:
        render.add_column(table, name, right=name in ("lr", "seed"))
    render.add_column(table, "sweep")
    for _, header, _ in _COMPARED:
        render.add_column(table, header, right=True)
    for row in comparison["groups"]:
        group = _group_cells(comparison, row)
        for side in ("a", "b"):
            figures = [cell(row[side]) if row[side] else "·" for _, _, cell in _COMPARED]
            style = "cyan" if side == "b" else ""
            table.add_row(*(group if side == "a" else [""] * len(group)), side.upper(), *figures, style=style)
    return table


def _side_by_side(comparison: dict[str, Any]) -> Table:
    table = render.new_table(_compare_title(comparison))
    for name in comparison["by"]:
        render.add_column(table, name, right=name in ("lr", "seed"))
    metrics: list[tuple[str, Callable[[dict[str, Any]], str]]] = [
        (label, cell) for label, _, cell in _COMPARED
    ]
    metrics[1] = ("solve rate [95% CI]", _solve_cell)
    for label, _ in metrics:
        render.add_column(table, f"{label} A", right=True)
        render.add_column(table, f"{label} B", right=True)
        table.columns[-1].style = "cyan"
    for row in comparison["groups"]:
        cells = _group_cells(comparison, row)
        for _, cell in metrics:
            cells += [cell(row["a"]) if row["a"] else "·", cell(row["b"]) if row["b"] else "·"]
        table.add_row(*cells)
    return table
