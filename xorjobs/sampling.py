"""Sampled learning rates and seeds (issue 12 §2): the draw, done once when a sweep is submitted.

A sweep may ask for ``lrs: {sample: log_uniform, low: 0.001, high: 10, count: 50}`` or
``seeds: {sample: random, count: 100}`` (``xorjobs.spec.LrSample``/``SeedSample``). The values are drawn
here, from the sweep's sampler seed (given, or generated and stored), and become the spec's plain lists,
so every sampled job is an ordinary job. The same request with the same sampler seed draws the same
values on every machine:

- the generator is Python's ``random.Random`` seeded with an integer, and only its ``random()`` method is
  used: the one the Python documentation guarantees to give the same sequence for the same seed across
  versions (numpy is not in the base install, and its ``Generator`` would add nothing here);
- each axis has its own stream (``random.Random(2 * sampler_seed)`` for lrs, ``2 * sampler_seed + 1`` for
  seeds), so asking for more seeds leaves the drawn lrs as they were;
- a rate is ``low + (high - low) * u`` (uniform) or ``exp(log low + (log high - log low) * u)``
  (log-uniform), rounded to 6 significant digits: readable in tables, and a last-bit difference between
  two platforms' ``exp``/``log`` cannot change it (short of landing exactly on a rounding boundary);
- a seed is ``floor(u * 2**31)``;
- a value equal to one drawn before (for rates: equal in float32, the rule of ``SweepSpec``) is skipped
  and the next one drawn, so the draw stays deterministic; the values are then sorted ascending.

``seeds: {first: 1, last: 1000}`` (``xorjobs.spec.SeedRange``) is expanded here too, before the draw: it is
a notation for its list, not a request (no sampler seed, no record), so it is stored as that list.
"""

from __future__ import annotations

import math
import random
import secrets
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from xorjobs.errors import got
from xorjobs.spec import LrSample, Sampling, SeedRange, SeedSample, as_float32

SIGNIFICANT_DIGITS = 6
"""Drawn learning rates are rounded to this many significant digits (see the module docstring)."""
RANDOM_SEED_BOUND = 2**31
"""Random seeds are drawn from 0 to 2**31 - 1: any torch seed, and short enough to type."""
GENERATED_SAMPLER_SEED_BOUND = 2**32
"""A sampler seed generated at submit is below this (any seed up to 2**63 - 1 may be given)."""
EXTRA_DRAWS = 1000
"""Draws allowed beyond ``count`` to replace repeats before the request is refused as too narrow."""


def new_sampler_seed() -> int:
    return secrets.randbelow(GENERATED_SAMPLER_SEED_BOUND)


def draw_lrs(request: LrSample, sampler_seed: int) -> list[float]:
    """``request.count`` distinct learning rates (distinct in float32), sorted ascending."""
    stream = random.Random(2 * sampler_seed)
    low, high = request.low, request.high
    log_low, log_high = math.log(low), math.log(high)

    def draw() -> float:
        u = stream.random()
        if request.sample == "uniform":
            value = low + (high - low) * u
        else:
            value = math.exp(log_low + (log_high - log_low) * u)
        return min(max(float(f"{value:.{SIGNIFICANT_DIGITS}g}"), low), high)

    drawn = _distinct(draw, request.count, as_float32)
    if drawn is None:
        raise ValueError(
            f"lrs: fewer than {request.count} distinct learning rates (rounded to {SIGNIFICANT_DIGITS} "
            f"significant digits, distinct in float32) lie between {low!r} and {high!r}; widen the bounds "
            "or lower count"
        )
    return sorted(drawn)


def draw_seeds(request: SeedSample, sampler_seed: int) -> list[int]:
    """``request.count`` distinct seeds in [0, 2**31), sorted ascending."""
    stream = random.Random(2 * sampler_seed + 1)
    drawn = _distinct(
        lambda: math.floor(stream.random() * RANDOM_SEED_BOUND), request.count, lambda seed: seed
    )
    if drawn is None:  # not reachable for count <= 10,000 out of 2**31, but never loop for ever
        raise ValueError(f"seeds: could not draw {request.count} distinct seeds")
    return sorted(drawn)


def _distinct(draw: Any, count: int, key: Any) -> list[Any] | None:
    values: list[Any] = []
    seen: set[Any] = set()
    for _ in range(count + EXTRA_DRAWS):
        value = draw()
        if key(value) not in seen:
            seen.add(key(value))
            values.append(value)
            if len(values) == count:
                return values
    return None


def resolve_samples(data: dict[str, Any]) -> dict[str, Any]:
    """``SweepSpec``'s input with each sampled field drawn into a list and the request kept in ``sampling``.

    Input that already carries a ``sampling`` record (a stored spec read back, or a client posting the
    spec it resolved) must hold exactly the draw of that record: the record, not the lists, is the request.
    """
    data = _expanded_seed_range(data)
    record_given = data.get("sampling")
    lr_request = _request(data, "lrs", LrSample)
    seed_request = _request(data, "seeds", SeedSample)
    if record_given is not None:
        if lr_request is not None or seed_request is not None:
            raise ValueError(
                "sampling: give a sampled lrs/seeds or a sampling record with its values, not both"
            )
        record = _validated(Sampling, record_given, "sampling")
        seed = _sampler_seed(
            data.get("sampler_seed"), required=record.lrs is not None or record.seeds is not None
        )
        for field, values in _draws(record.lrs, record.seeds, seed).items():
            if data.get(field) != values:
                raise ValueError(
                    f"{field}: the values are not the draw of sampling.{field} with sampler_seed {seed}; "
                    "submit the sweep's document instead (`xorjobs spec SWEEP_ID`)"
                )
        return data
    if lr_request is None and seed_request is None:
        if data.get("sampler_seed") is not None:
            raise ValueError("sampler_seed: nothing is sampled (give lrs or seeds as a sample to draw)")
        return data
    given_seed = data.get("sampler_seed")
    seed = new_sampler_seed() if given_seed is None else _sampler_seed(given_seed, required=True)
    drawn = _draws(lr_request, seed_request, seed)
    record_made = Sampling(lrs=lr_request, seeds=seed_request, generated_seed=given_seed is None)
    return {**data, **drawn, "sampler_seed": seed, "sampling": record_made.model_dump(exclude_none=True)}


def has_sample(fields: Mapping[str, Any]) -> bool:
    """Whether ``fields`` ask for a draw (a seed range is not one: it needs no sampler seed)."""
    seeds = fields.get("seeds")
    return isinstance(fields.get("lrs"), dict) or (isinstance(seeds, dict) and not _is_seed_range(seeds))


def _is_seed_range(value: Mapping[str, Any]) -> bool:
    return not {"sample", "count"} & value.keys() and bool({"first", "last"} & value.keys())


def _expanded_seed_range(data: dict[str, Any]) -> dict[str, Any]:
    """``seeds: {first: A, last: B}`` as the list A..B (inclusive); another mapping must be a sample."""
    seeds = data.get("seeds")
    if not isinstance(seeds, dict):
        return data
    if _is_seed_range(seeds):
        return {**data, "seeds": _validated(SeedRange, seeds, "seeds").seeds}
    if {"first", "last"} & seeds.keys():
        raise ValueError("seeds: give a range {first: A, last: B} or {sample: random, count: N}, not both")
    if not {"sample", "count"} & seeds.keys():
        raise ValueError(
            "seeds: write a list, a range {first: A, last: B} or random seeds {sample: random, count: N}"
        )
    return data


def _draws(lr_request: LrSample | None, seed_request: SeedSample | None, seed: int | None) -> dict[str, Any]:
    drawn: dict[str, Any] = {}
    if seed is None:
        return drawn
    if lr_request is not None:
        drawn["lrs"] = draw_lrs(lr_request, seed)
    if seed_request is not None:
        drawn["seeds"] = draw_seeds(seed_request, seed)
    return drawn


def _request(data: dict[str, Any], field: str, model: type[Any]) -> Any:
    value = data.get(field)
    return _validated(model, value, field) if isinstance(value, dict) else None


def _validated(model: type[Any], value: object, field: str) -> Any:
    """The request as its model; a bad one is a ValueError naming ``field.key`` (``lrs.low: ...``)."""
    try:
        return model.model_validate(value)
    except ValidationError as error:
        first = error.errors()[0]
        location = ".".join([field, *(str(part) for part in first["loc"])])
        message = first["msg"].removeprefix("Value error, ")
        head, separator, rest = message.partition(": ")
        if separator and " " not in head:  # the model's own validator named the key (``high: ...``)
            location, message = f"{location}.{head}", rest
        elif message.startswith("Input should") and first["loc"]:
            message = f"{message} {got(first['input'])}"
        raise ValueError(f"{location}: {message}") from None


def _sampler_seed(value: object, required: bool) -> int | None:
    if value is None:
        if required:
            raise ValueError("sampler_seed: a sampling record needs the sampler seed it was drawn with")
        return None
    if type(value) is not int or not 0 <= value < 2**63:
        raise ValueError(f"sampler_seed: {value!r} is not an integer from 0 to 2^63 - 1")
    return value
