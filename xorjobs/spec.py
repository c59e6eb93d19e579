"""The job contract: what a sweep may ask for, how it is validated, and how it expands into jobs.

One place serves the API (the pydantic model is its request body, so the limits appear in the OpenAPI
schema) and the CLI (which parses its flags, ``xorjobs.spec_tokens``, into the same model). Limits are
issue 2's, section 2.
"""

from __future__ import annotations

import re
import struct
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from xorjobs.defaults import (
    DEFAULT_LOG_EVERY,
    DEFAULT_LR,
    DEFAULT_SEED,
    DEFAULT_STEPS,
    MAX_COST_POINTS_PER_JOB,
    MAX_COST_POINTS_PER_SWEEP,
    VARIANTS,
    Variant,
    cost_points,
)
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

MAX_IDEMPOTENCY_KEY_LENGTH = 200
"""The store's column holds 200 characters; the CLI (embedded or not) and the API refuse longer keys."""
IDEMPOTENCY_KEY_PATTERN = r"^[!-~]([ -~]*[!-~])?$"
"""An idempotency key is printable ASCII (letters, digits, punctuation, inner spaces), so it travels in an
HTTP header unchanged: header values are ASCII, and leading or trailing spaces are stripped on the way."""

Seed = Annotated[int, Field(strict=True, ge=0, le=MAX_SEED)]
LearningRate = Annotated[float, Field(strict=True, gt=0, le=MAX_LR, allow_inf_nan=False)]
StopThreshold = Annotated[float, Field(strict=True, gt=0, allow_inf_nan=False)]
"""``stop_below``: a finite cost threshold above 0 (BCE costs are >= 0, so 0 would never stop)."""
SampleCount = Annotated[int, Field(strict=True, ge=1, le=MAX_JOBS_PER_SWEEP)]


# --- sampled learning rates and seeds (issue 12 §2): the requests; xorjobs.sampling draws them -------


class LrSample(BaseModel):
    """``lrs`` drawn once at submit: ``count`` rates between ``low`` and ``high`` (bounds checked like any
    learning rate), log-uniformly or uniformly."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    sample: Literal["log_uniform", "uniform"]
    low: LearningRate
    high: LearningRate
    count: SampleCount

    @model_validator(mode="after")
    def _ordered_bounds(self) -> LrSample:
        if as_float32(self.low) == 0:
            raise ValueError(f"low: {self.low!r} rounds to 0 in float32 (the models train in float32)")
        if not self.low < self.high:
            raise ValueError(f"high: {self.high!r} must be above low ({self.low!r})")
        return self


class SeedSample(BaseModel):
    """``seeds`` drawn once at submit: ``count`` distinct random seeds."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    sample: Literal["random"]
    count: SampleCount


class SeedRange(BaseModel):
    """``seeds`` written as an inclusive range (``{first: 1, last: 1000}``, the flag's ``1-1000``): a
    notation for the list it stands for, expanded before validation (nothing is drawn or recorded)."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    first: Seed
    last: Seed

    @model_validator(mode="after")
    def _ascending_and_bounded(self) -> SeedRange:
        if self.last < self.first:
            raise ValueError(f"last: {self.last} is below first ({self.first}); a range runs upwards")
        if self.last - self.first + 1 > MAX_JOBS_PER_SWEEP:
            raise ValueError(
                f"last: {self.first} to {self.last} is {self.last - self.first + 1} seeds; at most "
                f"{MAX_JOBS_PER_SWEEP} are allowed (a sweep has at most that many jobs)"
            )
        return self

    @property
    def seeds(self) -> list[int]:
        return list(range(self.first, self.last + 1))


class Sampling(BaseModel):
    """What a sweep sampled, stored with it: each sampled field's request (the field holds the draw)."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    lrs: LrSample | None = None
    seeds: SeedSample | None = None
    generated_seed: bool = Field(
        default=False, description="the sampler seed was generated at submit (the request named none)"
    )


def _list_or_sample(items: dict[str, object], *forms: type[BaseModel]) -> WithJsonSchema:
    """The request schema of ``lrs``/``seeds``: a list, or a compact form (a sample drawn into a list at
    submit; for seeds also a range)."""
    listed = {"type": "array", "items": items, "minItems": 1, "maxItems": MAX_JOBS_PER_SWEEP}
    return WithJsonSchema(
        {"anyOf": [listed, *(form.model_json_schema() for form in forms)]}, mode="validation"
    )


_SEED_ITEMS = {"type": "integer", "minimum": 0, "maximum": MAX_SEED}
_LR_ITEMS = {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_LR}


class SweepSpec(BaseModel):
    """A sweep: variants × seeds × lrs, with shared steps, log interval and device."""

    # strict: no bool-as-number, no "1" for 1; forbid: an unknown field is a typo, not a default.
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    variants: list[Variant] = Field(default=list(VARIANTS), min_length=1, max_length=len(VARIANTS))
    seeds: Annotated[list[Seed], _list_or_sample(_SEED_ITEMS, SeedSample, SeedRange)] = Field(
        default=[DEFAULT_SEED], min_length=1, max_length=MAX_JOBS_PER_SWEEP
    )
    lrs: Annotated[list[LearningRate], _list_or_sample(_LR_ITEMS, LrSample)] = Field(
        default=[DEFAULT_LR], min_length=1, max_length=MAX_JOBS_PER_SWEEP
    )
    steps: int = Field(default=DEFAULT_STEPS, strict=True, ge=1, le=MAX_STEPS)
    log_every: int = Field(
        default=DEFAULT_LOG_EVERY, strict=True, ge=1, le=MAX_STEPS, description="default: min(100, steps)"
    )
    device: Device = "cpu"
    name: str | None = Field(default=None, max_length=MAX_NAME_LENGTH)
    # Early stopping (issue 12 §3), off by default: a job stops at the first logged step s whose logged
    # cost is below stop_below, or (stop_when_solved) whose forward pass labels all four inputs right;
    # it then equals a run with steps = s + 1 bit for bit (``models.stopping``).
    stop_below: StopThreshold | None = Field(
        default=None, description="stop a job at the first logged step whose cost is below this"
    )
    stop_when_solved: bool = Field(
        default=False, description="stop a job at the first logged step whose hypothesis labels XOR right"
    )
    # Sampling (issue 12 §2): a sampled lrs/seeds request is drawn into a plain list when the spec is built
    # (``_draw_samples``), with this seed, and the request is kept in ``sampling``.
    sampler_seed: Seed | None = Field(
        default=None, description="the seed of the draw of sampled lrs/seeds (given, or generated at submit)"
    )
    sampling: Sampling | None = Field(
        default=None, description="what was sampled (the requests); lrs and seeds hold the drawn values"
    )

    @model_validator(mode="before")
    @classmethod
    def _draw_samples(cls, data: object) -> object:
        """A sampled ``lrs``/``seeds`` is drawn here, once, so every job is an ordinary job afterwards;
        a spec read back with its ``sampling`` record is checked against its draw. A seed range
        (``SeedRange``) is expanded here too."""
        if isinstance(data, dict) and ({"sampler_seed", "sampling"} & data.keys() or _has_sample(data)):
            from xorjobs.sampling import resolve_samples  # it builds on this module

            return resolve_samples(data)
        return data

    @model_validator(mode="before")
    @classmethod
    def _default_log_every(cls, data: object) -> object:
        """Unless given, log every 100 steps, or at least at step 0 of a shorter run."""
        if isinstance(data, dict) and "log_every" not in data:
            steps = data.get("steps", DEFAULT_STEPS)
            if type(steps) is int and steps >= 1:
                return {**data, "log_every": min(DEFAULT_LOG_EVERY, steps)}
        return data

    @field_validator("name")
    @classmethod
    def _printable_name(cls, name: str | None) -> str | None:
        """Names are printed in terminals and tables: a control character (ESC, BEL, a newline, DEL, ...)
        could rewrite another user's screen or split a row, so it is refused rather than stored."""
        if name is not None:
            bad = first_control_character(name)
            if bad is not None:
                raise ValueError(f"contains the control character U+{ord(bad):04X}; use printable text")
        return name

    @field_validator("lrs")
    @classmethod
    def _lrs_in_float32(cls, lrs: list[float]) -> list[float]:
        """The models train in float32, so a rate is what it rounds to there: 1e-320 is 0 (SGD would not
        move), and 0.1 and 0.10000000001 are one job twice."""
        seen: dict[float, float] = {}
        for index, lr in enumerate(lrs):
            single = as_float32(lr)
            if single == 0:
                raise ValueError(f"lrs.{index}: {lr!r} rounds to 0 in float32 (the models train in float32)")
            if single in seen:
                raise ValueError(
                    f"lrs: {seen[single]!r} and {lr!r} are the same learning rate in float32 "
                    "(each combination runs once)"
                )
            seen[single] = lr
        return lrs

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
        per_job = cost_points(self.steps, self.log_every)
        if per_job > MAX_COST_POINTS_PER_JOB:
            raise ValueError(
                f"log_every: steps {self.steps} logged every {self.log_every} is {per_job} cost points per "
                f"job; at most {MAX_COST_POINTS_PER_JOB} are stored (log less often or train fewer steps)"
            )
        if per_job * count > MAX_COST_POINTS_PER_SWEEP:
            raise ValueError(
                f"log_every: {count} jobs x {per_job} cost points is {per_job * count}; a sweep stores at "
                f"most {MAX_COST_POINTS_PER_SWEEP} (log less often, train fewer steps or split the sweep)"
            )
        return self

    @property
    def job_count(self) -> int:
        return len(self.variants) * len(self.seeds) * len(self.lrs)

    @property
    def queue(self) -> str:
        return queue_for(self.device)


def _has_sample(data: dict[object, object]) -> bool:
    return isinstance(data.get("lrs"), dict) or isinstance(data.get("seeds"), dict)


def queue_for(device: str) -> str:
    """CPU jobs go to queue ``cpu``, CUDA jobs to ``gpu``."""
    return "gpu" if device == "cuda" else "cpu"


def as_float32(value: float) -> float:
    """``value`` rounded to the nearest float32 (what the models compute with)."""
    single: float = struct.unpack("f", struct.pack("f", value))[0]
    return single


def first_control_character(text: str) -> str | None:
    """The first character of ``text`` a terminal would act on instead of print: C0 and C1 controls
    (ESC, BEL, newline, ...), DEL, and the Unicode line and paragraph separators."""
    for character in text:
        if unicodedata.category(character) in ("Cc", "Zl", "Zp"):
            return character
    return None


def check_idempotency_key(key: str, field: str = "Idempotency-Key") -> str:
    """The one rule for idempotency keys, in embedded and server mode alike (``IDEMPOTENCY_KEY_PATTERN``)."""
    if len(key) > MAX_IDEMPOTENCY_KEY_LENGTH:
        raise InvalidSpec(field, f"{len(key)} characters; at most {MAX_IDEMPOTENCY_KEY_LENGTH} are allowed")
    if re.fullmatch(IDEMPOTENCY_KEY_PATTERN, key) is None:
        raise InvalidSpec(
            field,
            f"{key!r} is not printable ASCII without leading or trailing spaces "
            "(letters, digits, punctuation and inner spaces; a UUID is a good key)",
        )
    return key


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
        raise InvalidSpec(*_located(location, _plain(first["msg"]))) from None


def _field_in_message(message: str) -> str:
    head = re.match(r"(?:Value error, )?([a-z_]+)[.:]", message)
    if head is not None and head.group(1) in SweepSpec.model_fields:
        return head.group(1)  # the validator named its field first (``sampler_seed: ...``)
    for name in ("variants", "seeds", "lrs", "log_every", "steps"):
        if name in message:
            return name
    return "sweep"


def _plain(message: str) -> str:
    return message.removeprefix("Value error, ")


def _located(location: str, message: str) -> tuple[str, str]:
    """A validator's message may name a finer location first (``lrs.2: ...``): use it as the field."""
    head, separator, rest = message.partition(": ")
    if separator and head.split(".")[0] == location.split(".")[0] and " " not in head:
        return head, rest
    return location, message
