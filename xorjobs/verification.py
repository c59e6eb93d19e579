"""``xorjobs verify``'s comparison: a stored job against its solo re-run, as one JSON-ready report.

Pure functions over plain numbers (no torch, no store), so the API, the worker that re-runs the job and
the CLI share one definition of "bit-identical", and it is unit-tested on its own.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

Costs = Sequence[tuple[int, float]]
"""Logged ``(step, cost)`` pairs, in step order."""


def same_bits(a: float | None, b: float | None) -> bool:
    """The same float: equal with the same sign (0.0 and -0.0 differ), or both NaN (the store keeps NaN
    as a kind, not its payload bits, so two NaNs are the same stored value)."""
    if a is None or b is None:
        return a is b
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)


def absolute_difference(a: float, b: float) -> float:
    """``|a - b|``; 0 for the same bits; infinite when one side is NaN or infinite and the other not."""
    if same_bits(a, b):
        return 0.0
    if not (math.isfinite(a) and math.isfinite(b)):
        return math.inf
    return abs(a - b)


def relative_difference(a: float, b: float) -> float:
    """``|a - b| / max(|a|, |b|)``: 0 for the same bits, 1 for a cost against 0, infinite with NaN/inf."""
    difference = absolute_difference(a, b)
    if difference in (0.0, math.inf):
        return difference
    return difference / max(abs(a), abs(b))


@dataclass(frozen=True)
class CostComparison:
    steps_compared: int
    max_abs_diff: float
    max_rel_diff: float
    first_differing_step: int | None

    @property
    def identical(self) -> bool:
        return self.first_differing_step is None


def compare_costs(stored: Costs, rerun: Costs) -> CostComparison:
    """Compare two cost logs step by step. A step logged by only one side differs (it is the first
    differing step if it comes first) and makes the maximum differences infinite: the runs logged
    different steps, so they are not the same run."""
    stored_by_step = {int(step): float(cost) for step, cost in stored}
    rerun_by_step = {int(step): float(cost) for step, cost in rerun}
    steps = sorted(stored_by_step.keys() | rerun_by_step.keys())
    max_abs = max_rel = 0.0
    first: int | None = None
    for step in steps:
        if step not in stored_by_step or step not in rerun_by_step:
            max_abs = max_rel = math.inf
            first = step if first is None else first
            continue
        a, b = stored_by_step[step], rerun_by_step[step]
        if not same_bits(a, b):
            first = step if first is None else first
            max_abs = max(max_abs, absolute_difference(a, b))
            max_rel = max(max_rel, relative_difference(a, b))
    return CostComparison(len(steps), max_abs, max_rel, first)


def _same_list(a: Sequence[float] | None, b: Sequence[float] | None) -> bool:
    if a is None or b is None:
        return a is b
    return len(a) == len(b) and all(same_bits(x, y) for x, y in zip(a, b, strict=True))


def provenance_note(stored: Mapping[str, Any], here: Mapping[str, Any]) -> str | None:
    """Why a difference may be expected: the stored job was made on another device, CPU kind or torch
    version than the re-run (bit-identity holds for one CPU kind and one torch version)."""
    differences = []
    if stored.get("device") != here.get("device"):
        differences.append(f"device {stored.get('device')} (re-run on {here.get('device')})")
    elif here.get("device") == "cpu" and stored.get("cpu_capability") != here.get("cpu_capability"):
        differences.append(
            f"CPU capability {stored.get('cpu_capability') or 'unknown'} "
            f"(this machine: {here.get('cpu_capability')})"
        )
    if stored.get("torch_version") != here.get("torch_version"):
        differences.append(
            f"torch {stored.get('torch_version') or 'unknown'} (this machine: {here.get('torch_version')})"
        )
    if not differences:
        return None
    return "the stored job was made on " + " and ".join(differences)


def verify_report(
    job: Mapping[str, Any],
    stored_costs: Costs,
    rerun: Mapping[str, Any],
    here: Mapping[str, Any],
) -> dict[str, Any]:
    """The report of ``xorjobs verify`` (the JSON shape of ``POST /jobs/{id}/verify``).

    ``job`` is the stored record (``GET /jobs/{id}``), ``stored_costs`` its logged costs; ``rerun`` holds
    the re-run's ``costs``, ``hypothesis``, ``predicted`` and ``accuracy``; ``here`` what made the re-run
    (``device``, ``device_name``, ``cpu_capability``, ``torch_version``)."""
    costs = compare_costs(stored_costs, rerun["costs"])
    hypothesis_identical = _same_list(job.get("hypothesis"), rerun.get("hypothesis"))
    labels_agree = _same_list(job.get("predicted"), rerun.get("predicted"))
    accuracy_agrees = same_bits(job.get("accuracy"), rerun.get("accuracy"))
    stored = {
        "device": job.get("device"),
        "device_name": job.get("device_name"),
        "cpu_capability": job.get("cpu_capability"),
        "torch_version": job.get("torch_version"),
        "engine": job.get("engine"),
    }
    return {
        "job_id": job["id"],
        "identical": costs.identical and hypothesis_identical and labels_agree and accuracy_agrees,
        "device": here.get("device"),
        "steps_compared": costs.steps_compared,
        "max_abs_cost_diff": costs.max_abs_diff,
        "max_rel_cost_diff": costs.max_rel_diff,
        "first_differing_step": costs.first_differing_step,
        "costs_identical": costs.identical,
        "hypothesis_identical": hypothesis_identical,
        "labels_agree": labels_agree,
        "accuracy_agrees": accuracy_agrees,
        "stored_accuracy": job.get("accuracy"),
        "rerun_accuracy": rerun.get("accuracy"),
        "stored": stored,
        "here": dict(here),
        "note": provenance_note(stored, here),
    }
