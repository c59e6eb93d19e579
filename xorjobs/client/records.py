"""Typed records of what the client returns: frozen dataclasses built from the JSON the API (or the
in-process service) answers, so an editor completes ``job.final_cost`` and a typo is a type error.

The JSON contract stays the source (README, "JSON shapes"): a key this version of the client does not
know yet (a newer server) is kept in ``extra`` instead of being dropped or refused.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, TypeVar

from xorjobs.defaults import TERMINAL_STATES

_NON_FINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}
"""How the API writes non-finite numbers in JSON (``"nan"``, ``"inf"``, ``"-inf"``)."""


def number(value: object) -> float | None:
    """A float from the API's JSON: a number, a non-finite one as its string, or null."""
    if value is None:
        return None
    if isinstance(value, str):
        return _NON_FINITE[value]
    assert isinstance(value, int | float), value
    return float(value)


def _numbers(values: Sequence[object] | None) -> tuple[float, ...] | None:
    return None if values is None else tuple(float(number(value) or 0.0) for value in values)


Record = TypeVar("Record")


def _split(cls: type[Any], data: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The keys the dataclass has, and the rest (kept in ``extra``)."""
    known = {item.name for item in fields(cls)} - {"extra"}
    return {key: value for key, value in data.items() if key in known}, {
        key: value for key, value in data.items() if key not in known
    }


@dataclass(frozen=True)
class Job:
    """One job: what it trains, its state, and (when it succeeded) what it found.

    ``final_cost`` is the trained model's cost (the seed's criterion on the final hypothesis);
    ``last_logged_cost`` the cost logged at the last logged step; ``costs`` the ``(step, cost)`` pairs
    (only in ``results()``, None in ``status()``).
    """

    id: str
    sweep_id: str
    variant: str
    seed: int
    lr: float
    steps: int
    log_every: int
    device: str
    queue: str
    state: str
    attempt: int = 0
    error: str | None = None
    created_at: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    duration_seconds: float | None = None
    worker: str | None = None
    device_name: str | None = None
    torch_version: str | None = None
    cpu_capability: str | None = None
    engine: str | None = None
    final_cost: float | None = None
    last_logged_cost: float | None = None
    accuracy: float | None = None
    # Early stopping (README, "Early stopping"): the sweep's rule, then how far the job trained and why
    # it stopped (``stopped_at_step`` None: it trained all its steps).
    stop_below: float | None = None
    stop_when_solved: bool = False
    steps_trained: int | None = None
    stopped_at_step: int | None = None
    stop_reason: str | None = None
    hypothesis: tuple[float, ...] | None = None
    predicted: tuple[float, ...] | None = None
    costs: tuple[tuple[int, float], ...] | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Job:
        known, extra = _split(cls, data)
        for key in ("final_cost", "last_logged_cost", "accuracy", "duration_seconds", "lr", "stop_below"):
            if key in known:
                known[key] = number(known[key])
        for key in ("hypothesis", "predicted"):
            if key in known:
                known[key] = _numbers(known[key])
        if known.get("costs") is not None:
            known["costs"] = tuple((int(step), float(number(cost) or 0.0)) for step, cost in known["costs"])
        return cls(**known, extra=extra)

    @property
    def finished(self) -> bool:
        return self.state in TERMINAL_STATES

    @property
    def solved(self) -> bool:
        """Succeeded with every XOR label right (accuracy 1.0), the summaries' solve rule."""
        return self.state == "succeeded" and self.accuracy == 1.0


@dataclass(frozen=True)
class SweepStatus:
    """A sweep's state counts (always of the whole sweep) and its jobs (those a filter kept)."""

    sweep_id: str
    counts: Mapping[str, int]
    jobs: tuple[Job, ...]
    name: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SweepStatus:
        known, extra = _split(cls, data)
        known["counts"] = dict(known.get("counts", {}))
        known["jobs"] = tuple(Job.from_json(job) for job in known.get("jobs", ()))
        return cls(**known, extra=extra)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def finished(self) -> int:
        return sum(self.counts.get(state, 0) for state in TERMINAL_STATES)

    @property
    def done(self) -> bool:
        """Every job of the sweep is succeeded, failed or cancelled."""
        return self.finished >= self.total

    @property
    def ok(self) -> bool:
        """Done, and no job failed or was cancelled (``xorjobs run`` exits 0)."""
        return self.done and not self.counts.get("failed", 0) and not self.counts.get("cancelled", 0)


@dataclass(frozen=True)
class SweepInfo:
    """One line of ``client.sweeps()``: a sweep's name, size, spec and state counts."""

    sweep_id: str
    name: str | None = None
    created_at: str | None = None
    size: int = 0
    spec: Mapping[str, Any] = field(default_factory=dict)
    counts: Mapping[str, int] = field(default_factory=dict)
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SweepInfo:
        known, extra = _split(cls, data)
        return cls(**known, extra=extra)


@dataclass(frozen=True)
class Summary:
    """``summary(by=...)``: one dict per group (the ``by`` fields, then the statistics; README, "Commands",
    ``results --by``)."""

    sweep_id: str
    by: tuple[str, ...]
    threshold: float
    groups: tuple[Mapping[str, Any], ...]
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Summary:
        known, extra = _split(cls, data)
        known["by"] = tuple(known.get("by", ()))
        known["threshold"] = float(number(known["threshold"]) or 0.0)
        known["groups"] = tuple(
            {
                key: number(value) if isinstance(value, str) and value in _NON_FINITE else value
                for key, value in group.items()
            }
            for group in known.get("groups", ())
        )
        return cls(**known, extra=extra)


@dataclass(frozen=True)
class VerifyReport:
    """``xorjobs verify``: a stored job re-run solo, compared with what the store holds.

    ``identical`` is True when every logged cost, the hypothesis, the labels and the accuracy are the same
    bits. ``max_abs_cost_diff``/``max_rel_cost_diff`` are over the logged steps (0.0 when identical; NaN
    against a number counts as infinitely far); ``first_differing_step`` is the first logged step whose
    cost differs (None when none does). ``stored`` and ``here`` say what made each run (device, CPU
    capability, torch version); ``note`` says why a difference may be expected (another CPU kind or
    torch version, or another device).
    """

    job_id: str
    identical: bool
    device: str
    steps_compared: int
    max_abs_cost_diff: float
    max_rel_cost_diff: float
    first_differing_step: int | None
    costs_identical: bool
    hypothesis_identical: bool
    labels_agree: bool
    accuracy_agrees: bool
    stored_accuracy: float | None
    rerun_accuracy: float | None
    stored: Mapping[str, Any]
    here: Mapping[str, Any]
    note: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> VerifyReport:
        known, extra = _split(cls, data)
        for key in ("max_abs_cost_diff", "max_rel_cost_diff", "stored_accuracy", "rerun_accuracy"):
            known[key] = number(known.get(key))
        return cls(**known, extra=extra)
