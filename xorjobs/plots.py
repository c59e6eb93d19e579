"""Cost-curve plots (issue 5): log-scale cost against step, one colour per group, the median over the
group's jobs with its interquartile band; or one job's curve.

matplotlib is imported inside the functions, so the CLI and the API load it only to draw. Figures are
built with ``matplotlib.figure.Figure`` directly, never through pyplot: no global figure registry, no
GUI backend, and safe in the API's worker threads. ``*_figure`` returns the Figure (tests read its
line data); ``png_bytes`` renders it with the Agg canvas.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from xorjobs.analysis import CostCurve

if TYPE_CHECKING:
    from matplotlib.figure import Figure

WIDTH_INCHES, HEIGHT_INCHES, DPI = 8.0, 5.0, 100
"""Every PNG is 800 × 500 pixels."""
MAX_LEGEND_ENTRIES = 20


def group_label(job: Mapping[str, Any], by: Sequence[str]) -> str:
    return ", ".join(f"{name}={job[name]}" for name in by) if by else "all jobs"


def median_and_quartiles(
    curves: Sequence[CostCurve],
) -> tuple[list[int], list[float], list[float], list[float]]:
    """Per logged step: the median, 25th and 75th percentile of the finite positive costs at that step.

    Curves may differ in length (a running job has fewer steps); a step counts the jobs that logged it.
    NaN, infinite and non-positive costs (which a log scale cannot show) are left out of that step.
    """
    import numpy as np

    # Vectorised: a 10,000-job sweep brings a million points (a dict of lists took seconds).
    steps = np.fromiter((step for curve in curves for step, _ in curve), dtype=np.int64)
    values = np.fromiter((float(cost) for curve in curves for _, cost in curve), dtype=np.float64)
    shown = np.isfinite(values) & (values > 0)
    steps, values = steps[shown], values[shown]
    if steps.size == 0:
        return [], [], [], []
    order = np.argsort(steps, kind="stable")
    steps, values = steps[order], values[order]
    unique_steps, starts = np.unique(steps, return_index=True)
    quartiles = [np.percentile(chunk, [50, 25, 75]) for chunk in np.split(values, starts[1:])]
    return (
        [int(step) for step in unique_steps],
        [float(q[0]) for q in quartiles],
        [float(q[1]) for q in quartiles],
        [float(q[2]) for q in quartiles],
    )


def sweep_figure(
    sweep_id: str,
    jobs: Sequence[Mapping[str, Any]],
    costs_by_job: Mapping[str, CostCurve],
    by: Sequence[str],
    threshold: float | None = None,
) -> Figure:
    """The median cost curve of each group (jobs grouped by ``by``, in the jobs' order) with its IQR band.

    Each group is one Line2D labelled like ``variant=nn`` (plus its job count), so a caller can read the
    plotted medians back from ``figure.axes[0].get_lines()``.
    """
    groups: dict[str, list[CostCurve]] = {}
    for job in jobs:
        groups.setdefault(group_label(job, by), []).append(held_curve(job, costs_by_job.get(job["id"], [])))
    figure, axes = _new_figure()
    colours = _colours(len(groups))
    for (label, curves), colour in zip(groups.items(), colours, strict=True):
        steps, median, low, high = median_and_quartiles(curves)
        if not steps:
            continue
        axes.fill_between(steps, low, high, color=colour, alpha=0.2, linewidth=0)
        # The count is of the curves drawn: a queued or cancelled job has none to add to the median.
        drawn = sum(1 for curve in curves if curve)
        axes.plot(
            steps,
            median,
            color=colour,
            linewidth=1.8,
            marker=_lone_marker(steps),
            label=f"{label} ({drawn} jobs)",
        )
    if threshold is not None:
        axes.axhline(threshold, color="0.4", linestyle="--", linewidth=1, label=f"threshold {threshold:g}")
    by_text = ", ".join(by) if by else "all jobs"
    stopping = any(job.get("stopped_at_step") is not None for job in jobs)
    band = "IQR band; stopped jobs keep their final cost" if stopping else "band: 25th–75th percentile"
    axes.set_title(f"sweep {sweep_id}: median cost by {by_text} ({band})", fontsize=10)
    _finish(axes, with_legend=len(groups) <= MAX_LEGEND_ENTRIES)
    return figure


def held_curve(job: Mapping[str, Any], costs: CostCurve) -> CostCurve:
    """A job's curve for a group's median: a job that stopped early (``models.stopping``) holds its
    trained model's cost at the logged steps after it stopped, as a model that is done would, so the
    median and band do not drift up as the solved jobs leave the group (survivors only are the slow
    ones). The job's own plot (``job_figure``) shows only what was logged."""
    stopped_at, final = job.get("stopped_at_step"), job.get("final_cost")
    if stopped_at is None or final is None:
        return costs
    every, steps = int(job["log_every"]), int(job["steps"])
    held = float(final)
    return [*costs, *((step, held) for step in range(int(stopped_at) + every, steps, every))]


def job_figure(job: Mapping[str, Any], costs: CostCurve) -> Figure:
    """One job's logged cost curve and its final (trained) cost as a point at step ``steps``; the title
    carries its variant, seed, lr, final cost and accuracy."""
    figure, axes = _new_figure()
    points = [(int(step), float(cost)) for step, cost in costs]
    shown = [(step, cost) for step, cost in points if math.isfinite(cost) and cost > 0]
    axes.plot(
        [step for step, _ in shown],
        [cost for _, cost in shown],
        color="#1f77b4",
        linewidth=1.8,
        marker=_lone_marker(shown),
        label="cost",
    )
    final = job.get("final_cost")
    accuracy = job.get("accuracy")
    trained = int(job.get("steps_trained") or job["steps"])
    if final is not None and math.isfinite(float(final)) and float(final) > 0:
        # The trained model's cost belongs after the last update, at the step count it trained (``steps``,
        # or fewer when it stopped early): the logged costs are each computed before their step's update.
        axes.plot([trained], [float(final)], marker="o", linestyle="none", color="#d62728", label="final")
    details = [f"{job['variant']}", f"seed {job['seed']}", f"lr {job['lr']:g}", str(job["state"])]
    if final is not None:
        details.append(f"final cost {float(final):.4g}")
    if accuracy is not None:
        details.append(f"accuracy {float(accuracy):g}")
    if job.get("stopped_at_step") is not None:
        details.append(f"stopped at {job['stopped_at_step']}")
    hidden = len(points) - len(shown)
    if hidden:
        details.append(f"{hidden} non-finite or non-positive point(s) not shown")
    axes.set_title(f"job {job['id']}: " + ", ".join(details), fontsize=9)
    _finish(axes, with_legend=False)
    return figure


def _lone_marker(points: Sequence[Any]) -> str | None:
    """A dot for a curve of one logged step (``--log-every`` = ``--steps``, or a job that stopped at step
    0): a line through one point draws nothing, so such a plot came out empty."""
    return "o" if len(points) == 1 else None


def png_bytes(figure: Figure) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    # No bbox_inches="tight": it would change the pixel size from figure to figure.
    figure.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return buffer.getvalue()


def _new_figure() -> tuple[Figure, Any]:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(WIDTH_INCHES, HEIGHT_INCHES), dpi=DPI, layout="constrained")
    axes = figure.add_subplot()
    axes.set_yscale("log", nonpositive="mask")
    return figure, axes


def _finish(axes: Any, with_legend: bool) -> None:
    axes.set_xlabel("step")
    axes.set_ylabel("cost (log scale)")
    axes.grid(True, which="both", linewidth=0.4, alpha=0.5)
    if with_legend and axes.get_legend_handles_labels()[0]:
        axes.legend(fontsize=8, loc="best")
    if not axes.has_data():
        axes.text(0.5, 0.5, "no costs logged yet", transform=axes.transAxes, ha="center", va="center")


def _colours(count: int) -> list[Any]:
    from matplotlib import colormaps

    palette = colormaps["tab10" if count <= 10 else "tab20"]
    return [palette(index % palette.N) for index in range(count)]
