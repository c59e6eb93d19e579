"""What a sweep found: per-group solve rates, final costs, steps to converge, divergence (issue 5).

Pure functions over plain values (the job records of ``queries.sweep_status`` and the costs of
``queries.costs_by_job``), so the CLI, the API and the tests compute the same numbers from the same
two queries. Standard library only: no torch, no numpy, no pandas.

The definitions, per group of jobs:

- a job *solves* XOR when it succeeded with accuracy 1.0; ``solve_rate`` is solved / succeeded, with a
  95 % Wilson score interval (it stays inside [0, 1] and is sensible at 0 or n successes, unlike the
  normal approximation; Newcombe 1998, method 3);
- a job *diverged* when one of its logged costs (or its final cost) is NaN or infinite;
- a job's *final cost* is the trained model's cost (the seed's criterion of its final hypothesis; see
  ``models.trained_cost``), not its last logged cost, which is computed before that step's update;
- the final-cost statistics cover the succeeded jobs whose final cost is finite (diverged ones are
  counted apart, in ``diverged``; jobs stored before xorjobs recorded the trained cost have none and are
  left out); ``final_cost_std`` is the sample standard deviation (n - 1);
- a job's *steps to converge* is the first logged step at which its cost is below ``threshold``;
  ``converged`` counts the succeeded jobs that got there and ``steps_to_converge_median`` is the median
  over those;
- early stopping (``models.stopping``): ``stopped`` counts the succeeded jobs whose rule held at a logged step
  (one whose rule first held at its last step counts too: it solved there, though it saved no step),
  ``stopped_at_median`` is the median of the logged steps where their rule held (their steps to solve,
  by the sweep's own rule), and ``steps_trained_median`` the median steps the succeeded jobs trained
  (``steps``, or ``stopped_at_step + 1`` for a stopped one): the compute the group used.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from xorjobs.defaults import JOB_STATES
from xorjobs.errors import InvalidSpec

GROUP_FIELDS: tuple[str, ...] = ("variant", "lr", "seed", "device")
"""The job fields a sweep can be grouped by."""
DEFAULT_THRESHOLD = 0.05
"""Cost below which a job counts as converged."""
Z_95 = statistics.NormalDist().inv_cdf(0.975)
"""The two-sided 95 % normal quantile, 1.959963984540054."""

Group = dict[str, Any]
CostCurve = Sequence[Sequence[Any]]
"""``[[step, cost], ...]`` as ``queries.costs_by_job`` returns it (cost may be NaN or inf)."""


def parse_by(text: str | Sequence[str] | None, field: str = "by") -> list[str]:
    """``"variant,lr"`` → ``["variant", "lr"]``; unknown or repeated: an InvalidSpec on ``field``."""
    if text is None:
        return []
    tokens = text.split(",") if isinstance(text, str) else [part for item in text for part in item.split(",")]
    names = [token.strip() for token in tokens if token.strip()]
    if not names:
        raise InvalidSpec(field, f"name at least one of {', '.join(GROUP_FIELDS)}")
    for name in names:
        if name not in GROUP_FIELDS:
            raise InvalidSpec(field, f"unknown field {name!r} (choose from {', '.join(GROUP_FIELDS)})")
    if len(set(names)) != len(names):
        raise InvalidSpec(field, "a field is given twice")
    return names


def check_threshold(threshold: float, field: str = "threshold") -> float:
    if not math.isfinite(threshold) or threshold <= 0:
        raise InvalidSpec(field, f"{threshold!r} is not a positive finite number")
    return threshold


def wilson_interval(successes: int, trials: int, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval of a binomial proportion (no continuity correction)."""
    if trials <= 0:
        raise ValueError("the Wilson interval needs at least one trial")
    if not 0 <= successes <= trials:
        raise ValueError(f"successes ({successes}) must lie in 0..{trials}")
    p = successes / trials
    z2 = z * z
    denominator = 1 + z2 / trials
    center = (p + z2 / (2 * trials)) / denominator
    half = z / denominator * math.sqrt(p * (1 - p) / trials + z2 / (4 * trials * trials))
    # At 0 or n successes one bound is exactly 0 or 1; computed, it can miss by an ulp.
    low = 0.0 if successes == 0 else max(0.0, center - half)
    high = 1.0 if successes == trials else min(1.0, center + half)
    return low, high


@dataclass(frozen=True)
class JobFindings:
    """What one job contributes to its group."""

    state: str
    solved: bool
    final_cost: float | None
    steps_to_converge: int | None
    diverged: bool
    steps_trained: int | None = None
    stopped_at_step: int | None = None


def job_findings(job: Mapping[str, Any], costs: CostCurve, threshold: float) -> JobFindings:
    """Reduce one job record and its cost curve to the facts the group statistics need."""
    values = [(int(step), _as_float(cost)) for step, cost in costs]
    final = job.get("final_cost")
    final_cost = None if final is None else _as_float(final)
    diverged = any(not math.isfinite(cost) for _, cost in values) or (
        final_cost is not None and not math.isfinite(final_cost)
    )
    succeeded = job["state"] == "succeeded"
    accuracy = job.get("accuracy")
    return JobFindings(
        state=str(job["state"]),
        solved=succeeded and accuracy is not None and float(accuracy) == 1.0,
        final_cost=final_cost if succeeded else None,
        steps_to_converge=next((step for step, cost in values if cost < threshold), None)
        if succeeded
        else None,
        diverged=diverged,
        steps_trained=_optional_int(job.get("steps_trained", job.get("steps"))) if succeeded else None,
        stopped_at_step=_optional_int(job.get("stopped_at_step")) if succeeded else None,
    )


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


def summarize(
    sweep_id: str,
    jobs: Sequence[Mapping[str, Any]],
    costs_by_job: Mapping[str, CostCurve],
    by: Sequence[str],
    threshold: float = DEFAULT_THRESHOLD,
) -> dict[str, Any]:
    """One group per combination of the ``by`` fields present in the sweep, in the jobs' order.

    Without ``by`` every job falls into one group.
    """
    groups: dict[tuple[Any, ...], list[JobFindings]] = {}
    for job in jobs:
        key = tuple(job[name] for name in by)
        groups.setdefault(key, []).append(job_findings(job, costs_by_job.get(job["id"], []), threshold))
    return {
        "sweep_id": sweep_id,
        "by": list(by),
        "threshold": threshold,
        "groups": [
            {**dict(zip(by, key, strict=True)), **group_statistics(found)} for key, found in groups.items()
        ],
    }


def group_statistics(findings: Sequence[JobFindings]) -> dict[str, Any]:
    """The statistics of one group (field names are the JSON and CSV contract)."""
    counts = {state.value: sum(1 for item in findings if item.state == state) for state in JOB_STATES}
    succeeded = counts["succeeded"]
    solved = sum(1 for item in findings if item.solved)
    finite_costs = [
        item.final_cost for item in findings if item.final_cost is not None and math.isfinite(item.final_cost)
    ]
    steps = [item.steps_to_converge for item in findings if item.steps_to_converge is not None]
    stopped_at = [item.stopped_at_step for item in findings if item.stopped_at_step is not None]
    trained = [item.steps_trained for item in findings if item.steps_trained is not None]
    return {
        "jobs": len(findings),
        "succeeded": succeeded,
        "failed": counts["failed"],
        "cancelled": counts["cancelled"],
        "unfinished": counts["queued"] + counts["running"],
        "solved": solved,
        "solve_rate": solved / succeeded if succeeded else None,
        "solve_rate_ci": list(wilson_interval(solved, succeeded)) if succeeded else None,
        "final_cost_mean": statistics.fmean(finite_costs) if finite_costs else None,
        "final_cost_std": statistics.stdev(finite_costs) if len(finite_costs) >= 2 else None,
        "final_cost_median": statistics.median(finite_costs) if finite_costs else None,
        "converged": len(steps),
        "steps_to_converge_median": _plain_number(statistics.median(steps)) if steps else None,
        "diverged": sum(1 for item in findings if item.diverged),
        "stopped": len(stopped_at),
        "stopped_at_median": _plain_number(statistics.median(stopped_at)) if stopped_at else None,
        "steps_trained_median": _plain_number(statistics.median(trained)) if trained else None,
    }


SUMMARY_STATISTICS: tuple[str, ...] = (
    "jobs",
    "succeeded",
    "failed",
    "cancelled",
    "unfinished",
    "solved",
    "solve_rate",
    "solve_rate_ci_low",
    "solve_rate_ci_high",
    "final_cost_mean",
    "final_cost_std",
    "final_cost_median",
    "converged",
    "steps_to_converge_median",
    "diverged",
    "stopped",
    "stopped_at_median",
    "steps_trained_median",
)
"""The CSV columns after the group fields (the interval split into its two bounds)."""


def flat_rows(summary: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The groups as flat rows for CSV: ``solve_rate_ci`` becomes ``solve_rate_ci_low``/``_high``."""
    rows = []
    for group in summary["groups"]:
        interval = group["solve_rate_ci"] or [None, None]
        row = {key: value for key, value in group.items() if key != "solve_rate_ci"}
        row["solve_rate_ci_low"], row["solve_rate_ci_high"] = interval
        rows.append(row)
    return rows


def incomparable(spec_a: Mapping[str, Any], spec_b: Mapping[str, Any]) -> str | None:
    """Why two sweeps' groups cannot be lined up, or None when they can.

    Sweeps that train a different number of steps report final costs of models trained for different
    times; sweeps that log at different intervals measure steps to converge on different grids. Either
    makes columns of a comparison mean two things, so ``compare`` refuses them (exit 2, saying which)
    instead of printing a table that misleads.
    """
    steps_a, steps_b = spec_a["steps"], spec_b["steps"]
    every_a, every_b = spec_a["log_every"], spec_b["log_every"]
    if steps_a != steps_b:
        return f"A trains {steps_a} steps and B {steps_b} (final costs after different training)"
    if every_a != every_b:
        return (
            f"A logs its cost every {every_a} steps and B every {every_b} (steps to converge on other grids)"
        )
    return None


def compare(summary_a: Mapping[str, Any], summary_b: Mapping[str, Any]) -> dict[str, Any]:
    """Line up the groups of two summaries made with the same ``by``: A's groups in order, then B's others."""
    by = list(summary_a["by"])
    if list(summary_b["by"]) != by:
        raise InvalidSpec("by", "both summaries must be grouped by the same fields")

    def key_of(group: Mapping[str, Any]) -> tuple[Any, ...]:
        return tuple(group[name] for name in by)

    groups_b = {key_of(group): group for group in summary_b["groups"]}
    keys = [key_of(group) for group in summary_a["groups"]]
    keys += [key for key in groups_b if key not in set(keys)]
    groups_a = {key_of(group): group for group in summary_a["groups"]}
    rows = []
    for key in keys:
        rows.append(
            {
                **dict(zip(by, key, strict=True)),
                "a": _statistics_only(groups_a.get(key), by),
                "b": _statistics_only(groups_b.get(key), by),
            }
        )
    return {
        "sweep_a": summary_a["sweep_id"],
        "sweep_b": summary_b["sweep_id"],
        "by": by,
        "threshold": summary_a["threshold"],
        "groups": rows,
    }


def _statistics_only(group: Mapping[str, Any] | None, by: Iterable[str]) -> dict[str, Any] | None:
    if group is None:
        return None
    skip = set(by)
    return {key: value for key, value in group.items() if key not in skip}


def _as_float(value: Any) -> float:
    """A cost as stored (float) or as JSON carries it ("nan", "inf", "-inf")."""
    return float(value)


def _plain_number(value: float) -> int | float:
    """A median of integer steps: an int when whole (``1200``, not ``1200.0``)."""
    return int(value) if float(value).is_integer() else value
