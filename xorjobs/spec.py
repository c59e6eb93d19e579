"""The job contract: what a sweep may ask for, how it is validated, and how it expands into jobs.

One place serves the API (the pydantic model is its request body, so the limits appear in the OpenAPI
schema) and the CLI (which parses its flags into the same model). Limits are issue 2's, section 2.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from xorjobs.defaults import DEFAULT_LOG_EVERY, DEFAULT_LR, DEFAULT_SEED, DEFAULT_STEPS, VARIANTS, Variant
from xorjobs.errors import InvalidSpec

Device = Literal["cpu", "cuda"]

MAX_SEED = 2**63 - 1
"""Seeds fit a signed 64-bit integer column (and ``torch.manual_seed``)."""
MAX_LR = 1000.0
"""Upper bound of the learning rate; 0 < lr <= MAX_LR."""
MAX_STEPS = 1_000_000
"""Upper bound of training steps per job."""
MAX_JOBS_PER_SWEEP = 10_000
"""A sweep expands to at most this many jobs."""
MAX_NAME_LENGTH = 200

Seed = Annotated[int, Field(strict=True, ge=0, le=MAX_SEED)]
LearningRate = Annotated[float, Field(strict=True, gt=0, le=MAX_LR, allow_inf_nan=False)]


class SweepSpec(BaseModel):
    """A sweep: variants × seeds × lrs, with shared steps, log interval and device."""

    # strict: no bool-as-number, no "1" for 1; forbid: an unknown field is a typo, not a default.
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    variants: list[Variant] = Field(default=list(VARIANTS), min_length=1, max_length=len(VARIANTS))
    seeds: list[Seed] = Field(default=[DEFAULT_SEED], min_length=1, max_length=MAX_JOBS_PER_SWEEP)
    lrs: list[LearningRate] = Field(default=[DEFAULT_LR], min_length=1, max_length=MAX_JOBS_PER_SWEEP)
    steps: int = Field(default=DEFAULT_STEPS, strict=True, ge=1, le=MAX_STEPS)
    log_every: int = Field(
        default=DEFAULT_LOG_EVERY, strict=True, ge=1, le=MAX_STEPS, description="default: min(100, steps)"
    )
    device: Device = "cpu"
    name: str | None = Field(default=None, max_length=MAX_NAME_LENGTH)

    @model_validator(mode="before")
    @classmethod
    def _default_log_every(cls, data: object) -> object:
        """Unless given, log every 100 steps, or at least at step 0 of a shorter run."""
        if isinstance(data, dict) and "log_every" not in data:
            steps = data.get("steps", DEFAULT_STEPS)
            if type(steps) is int and steps >= 1:
                return {**data, "log_every": min(DEFAULT_LOG_EVERY, steps)}
        return data

    @model_validator(mode="after")
    def _check_combinations(self) -> SweepSpec:
        if self.log_every > self.steps:
            raise ValueError(f"log_every ({self.log_every}) must be at most steps ({self.steps})")
        for field, values in (("variants", self.variants), ("seeds", self.seeds), ("lrs", self.lrs)):
            duplicate = _first_duplicate(values)
            if duplicate is not None:
                raise ValueError(f"{field}: {duplicate!r} is given twice (each combination runs once)")
        count = self.job_count
        if count > MAX_JOBS_PER_SWEEP:
            raise ValueError(f"the sweep has {count} jobs; at most {MAX_JOBS_PER_SWEEP} are allowed")
        return self

    @property
    def job_count(self) -> int:
        return len(self.variants) * len(self.seeds) * len(self.lrs)

    @property
    def queue(self) -> str:
        return queue_for(self.device)


def queue_for(device: str) -> str:
    """CPU jobs go to queue ``cpu``, CUDA jobs to ``gpu``."""
    return "gpu" if device == "cuda" else "cpu"


def _first_duplicate(values: Iterable[object]) -> object | None:
    seen: set[object] = set()
    for value in values:
        if value in seen:
            return value
        seen.add(value)
    return None


@dataclass(frozen=True)
class JobSpec:
    """One combination of a sweep."""

    position: int
    variant: str
    seed: int
    lr: float


def expand(spec: SweepSpec) -> list[JobSpec]:
    """One job per combination, in a fixed order: variant, then seed, then lr, each as given."""
    jobs: list[JobSpec] = []
    for variant in spec.variants:
        for seed in spec.seeds:
            for lr in spec.lrs:
                jobs.append(JobSpec(len(jobs), variant, seed, lr))
    return jobs


def validate_spec(fields: dict[str, object]) -> SweepSpec:
    """Build a SweepSpec, turning pydantic's error into an InvalidSpec that names the first bad field."""
    try:
        return SweepSpec.model_validate(fields)
    except ValidationError as error:
        first = error.errors()[0]
        location = ".".join(str(part) for part in first["loc"]) or _field_in_message(first["msg"])
        message = _plain(first["msg"]).removeprefix(f"{location}: ")
        raise InvalidSpec(location, message) from None


def _field_in_message(message: str) -> str:
    for name in ("variants", "seeds", "lrs", "log_every", "steps"):
        if name in message:
            return name
    return "sweep"


def _plain(message: str) -> str:
    return message.removeprefix("Value error, ")


# --- CLI token parsing: comma lists, repeated flags and inclusive seed ranges ----------------------


def split_tokens(values: Iterable[str]) -> list[str]:
    """``["nn,wide_deep", "backprop"]`` → ``["nn", "wide_deep", "backprop"]`` (flags may repeat)."""
    return [token.strip() for value in values for token in value.split(",") if token.strip() != ""]


def parse_seeds(values: Iterable[str]) -> list[int]:
    """Parse ``777``, ``1-10`` (inclusive) and comma lists; refuse oversized ranges before expanding."""
    seeds: list[int] = []
    for token in split_tokens(values):
        low_text, dash, high_text = token.partition("-")
        low = _parse_seed_number(low_text, token)
        high = _parse_seed_number(high_text, token) if dash else low
        if high < low:
            raise InvalidSpec("seed", f"range {token!r} runs backwards (a-b needs a <= b)")
        if len(seeds) + (high - low + 1) > MAX_JOBS_PER_SWEEP:
            raise InvalidSpec(
                "seed", f"more than {MAX_JOBS_PER_SWEEP} seeds (a sweep has at most that many jobs)"
            )
        seeds.extend(range(low, high + 1))
    return seeds


def _parse_seed_number(text: str, token: str) -> int:
    if not text.isdigit():
        raise InvalidSpec("seed", f"{token!r} is not a non-negative integer or a range a-b")
    value = int(text)
    if value > MAX_SEED:
        raise InvalidSpec("seed", f"{value} is too large (seeds are below 2^63)")
    return value


def parse_lrs(values: Iterable[str]) -> list[float]:
    """Parse learning rates; NaN, inf and overflowing literals such as ``1e309`` are refused."""
    lrs = []
    for token in split_tokens(values):
        try:
            lr = float(token)
        except ValueError:
            raise InvalidSpec("lr", f"{token!r} is not a number") from None
        if not math.isfinite(lr):
            raise InvalidSpec("lr", f"{token!r} is not a finite number")
        lrs.append(lr)
    return lrs
