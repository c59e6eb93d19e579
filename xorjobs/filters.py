"""Which jobs and sweeps a read shows (issue 12, section 4): one validated model per kind of filter,
shared by the CLI (its flags) and the API (its query parameters), so both accept the same values and
refuse the same ones with the same message.

The text of every filter is parsed with the sweep flags' own list rules (``xorjobs.spec``): comma lists,
repeated flags, seed ranges ``1-10``, ASCII digits only; then validated once, here, against the job
contract's types (a state or variant that exists, ``0 < lr <= 1000``, seeds below 2^63). The store
turns a model into SQLAlchemy expressions with bound parameters (``xorjobs.store.queries``); no SQL is
ever built from this text.

The rules a user sees:

- a job filter keeps the jobs matching *every* field given (``--state failed --variant nn``), each field
  matching *any* of its values (``--lr 0.5,1``); ``lr`` matches the rate exactly as submitted (the same
  decimal parsing as ``--lr`` at submit);
- ``sort`` orders by ``final_cost``, ``accuracy``, ``seed`` or ``lr``, ascending unless ``descending``;
  a job without that value (not succeeded, or a store from before the value was recorded) and a NaN
  cost sort last either way; ties keep the sweep's expansion order; ``limit`` keeps the first N;
- a sweep filter's ``name`` is a case-insensitive substring of the sweep's name (``%`` and ``_`` are
  plain characters); its ``states`` keep the sweeps with at least one job in any of those states
  (``--state running``: the sweeps still running; ``--state failed``: those with a failure).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Annotated, Any, Literal, TypeVar, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from xorjobs.defaults import JOB_STATES, VARIANTS, JobState, Variant
from xorjobs.errors import InvalidSpec, got
from xorjobs.spec import (
    MAX_JOBS_PER_SWEEP,
    MAX_NAME_LENGTH,
    LearningRate,
    Seed,
    first_control_character,
)
from xorjobs.spec_tokens import parse_lrs, parse_seeds, split_tokens

SortKey = Literal["final_cost", "accuracy", "seed", "lr"]
SORT_KEYS: tuple[str, ...] = get_args(SortKey)
MAX_FILTER_VALUES = 100
"""Most learning rates, and most seed ranges (``1-10`` is one), in one filter: each is a bound parameter,
and a statement's parameters stay under the oldest SQLite's 999 (see ``defaults.IDS_PER_STATEMENT``)."""

SeedRange = tuple[Seed, Seed]
"""Inclusive ``(low, high)``; one seed is ``(s, s)``."""


class _Filter(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


AnyFilter = TypeVar("AnyFilter", bound=_Filter)


class JobFilter(_Filter):
    """The jobs of a sweep that a read keeps; an empty field does not filter."""

    states: tuple[JobState, ...] = ()
    variants: tuple[Variant, ...] = ()
    lrs: tuple[LearningRate, ...] = Field(default=(), max_length=MAX_FILTER_VALUES)
    seed_ranges: tuple[SeedRange, ...] = Field(default=(), max_length=MAX_FILTER_VALUES)

    @property
    def is_empty(self) -> bool:
        return not (self.states or self.variants or self.lrs or self.seed_ranges)


class JobOrder(_Filter):
    """How a read orders the jobs it keeps, and how many: ``results --sort final_cost --limit 10``."""

    sort: SortKey | None = None
    descending: bool = False
    limit: Annotated[int, Field(ge=1, le=MAX_JOBS_PER_SWEEP)] | None = None

    @property
    def is_default(self) -> bool:
        return self.sort is None and self.limit is None


class SweepFilter(_Filter):
    """The sweeps ``sweeps`` lists."""

    name: str | None = Field(default=None, min_length=1, max_length=MAX_NAME_LENGTH)
    states: tuple[JobState, ...] = ()

    @field_validator("name")
    @classmethod
    def _printable(cls, name: str | None) -> str | None:
        """Names are printable (``SweepSpec``): a control character (NUL, which Postgres refuses in any
        text) can match no sweep, and is a typo."""
        if name is not None and first_control_character(name) is not None:
            raise ValueError("contains a control character; use printable text")
        return name


NO_JOB_FILTER = JobFilter()
DEFAULT_ORDER = JobOrder()
NO_SWEEP_FILTER = SweepFilter()

Texts = Sequence[str] | None
"""A filter's raw text: each item one flag or query value, itself maybe a comma list."""
Namer = Callable[[str], str]
"""How the front end names a field in an error: ``--lr`` on the CLI, ``lr`` in the API."""


def cli_flag(field: str) -> str:
    return f"--{field.replace('_', '-')}"


def query_parameter(field: str) -> str:
    """As the API's own 422s name a query parameter (``query.limit``)."""
    return f"query.{field}"


def parse_job_filter(
    *, states: Texts = None, variants: Texts = None, lrs: Texts = None, seeds: Texts = None, name: Namer
) -> JobFilter:
    """The filter from flag or query text; an InvalidSpec naming the flag (``name("lr")``) otherwise."""
    fields: dict[str, Any] = {}
    if states:
        fields["states"] = _choices(states, JOB_STATES, "job state", name("state"))
    if variants:
        fields["variants"] = _choices(variants, VARIANTS, "variant", name("variant"))
    if lrs:
        fields["lrs"] = tuple(dict.fromkeys(_renamed(parse_lrs, lrs, name)))
    if seeds:
        fields["seed_ranges"] = seed_ranges(_renamed(parse_seeds, seeds, name))
    return _validated(JobFilter, fields, name)


def parse_job_order(*, sort: str | None, descending: bool, limit: int | None, name: Namer) -> JobOrder:
    fields: dict[str, Any] = {"descending": descending, "limit": limit}
    if sort is not None:
        if sort not in SORT_KEYS:
            choices = ", ".join(SORT_KEYS)
            raise InvalidSpec(name("sort"), f"{sort!r} is not a sort key (choose from {choices})")
        fields["sort"] = sort
    return _validated(JobOrder, fields, name)


def parse_sweep_filter(*, name_part: str | None, states: Texts, name: Namer) -> SweepFilter:
    fields: dict[str, Any] = {"name": name_part}
    if states:
        fields["states"] = _choices(states, JOB_STATES, "job state", name("state"))
    return _validated(SweepFilter, fields, name)


def seed_ranges(seeds: Iterable[int]) -> tuple[SeedRange, ...]:
    """Seeds as the fewest inclusive ranges: ``[1, 2, 3, 7]`` → ``((1, 3), (7, 7))``."""
    ranges: list[list[int]] = []
    for seed in sorted(set(seeds)):
        if ranges and seed == ranges[-1][1] + 1:
            ranges[-1][1] = seed
        else:
            ranges.append([seed, seed])
    return tuple((low, high) for low, high in ranges)


# --- the same filters as HTTP query parameters (what the CLI sends to the API) ---------------------


def job_query_parameters(job_filter: JobFilter, order: JobOrder = DEFAULT_ORDER) -> dict[str, Any]:
    """The API's query parameters for this filter and order, which parse back to the same models."""
    parameters: dict[str, Any] = {}
    if job_filter.states:
        parameters["state"] = ",".join(job_filter.states)
    if job_filter.variants:
        parameters["variant"] = ",".join(job_filter.variants)
    if job_filter.lrs:
        parameters["lr"] = ",".join(repr(lr) for lr in job_filter.lrs)
    if job_filter.seed_ranges:
        parameters["seed"] = ",".join(
            str(low) if low == high else f"{low}-{high}" for low, high in job_filter.seed_ranges
        )
    if order.sort is not None:
        parameters["sort"] = order.sort
        parameters["desc"] = order.descending
    if order.limit is not None:
        parameters["limit"] = order.limit
    return parameters


def sweep_query_parameters(sweep_filter: SweepFilter) -> dict[str, Any]:
    parameters: dict[str, Any] = {}
    if sweep_filter.name is not None:
        parameters["name"] = sweep_filter.name
    if sweep_filter.states:
        parameters["state"] = ",".join(sweep_filter.states)
    return parameters


# --- parsing helpers ---------------------------------------------------------------------------------

_FIELD_OF = {"states": "state", "variants": "variant", "lrs": "lr", "seed_ranges": "seed"}


def _choices(texts: Sequence[str], allowed: Sequence[str], what: str, field: str) -> tuple[str, ...]:
    chosen = []
    for token in split_tokens(texts, field):
        if token not in allowed:
            raise InvalidSpec(field, f"{token!r} is not a {what} (choose from {', '.join(allowed)})")
        chosen.append(token)
    return tuple(dict.fromkeys(chosen))


def _renamed(parse: Callable[[Sequence[str]], list[Any]], texts: Sequence[str], name: Namer) -> list[Any]:
    """The spec's parser, its error naming this front end's field (it says ``seed``, not ``--seed``)."""
    try:
        return parse(texts)
    except InvalidSpec as error:
        raise InvalidSpec(name(error.field), error.message) from None


def _validated(model: type[AnyFilter], fields: dict[str, Any], name: Namer) -> AnyFilter:
    try:
        return model.model_validate(fields)
    except ValidationError as error:
        first = error.errors()[0]
        location = [str(part) for part in first["loc"]]
        field = _FIELD_OF.get(location[0], location[0]) if location else "filter"
        value = first.get("input")
        shown = f" {got(value)}" if isinstance(value, int | float | str) else ""
        raise InvalidSpec(name(field), first["msg"].removeprefix("Value error, ") + shown) from None
