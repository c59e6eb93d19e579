"""Flag text into values: comma lists, repeated flags, inclusive seed ranges, decimals, and the compact
sampled forms (``--lr loguniform:1e-3:10:50``, ``--seed random:100``).

Used by the sweep flags (``xorjobs.cli.sweep_options``) and the filters (``xorjobs.filters``); what the
values may be (bounds, duplicates, job counts) is ``xorjobs.spec``'s to check. One rule for every number a
flag takes: ASCII digits only (no "٣", no "1_000"), no empty list items. Errors are ``InvalidSpec`` naming
the field (``seed``, ``lr``) for the caller to name its flag.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Any

from xorjobs.errors import InvalidSpec
from xorjobs.spec import MAX_JOBS_PER_SWEEP, MAX_SEED

_INTEGER = re.compile(r"[0-9]+")
_DECIMAL = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")
_LR_SAMPLE = re.compile(r"(loguniform|log_uniform|uniform):(.*)")
_SEED_SAMPLE = re.compile(r"random:(.*)")


def split_tokens(values: Iterable[str], field: str = "value") -> list[str]:
    """``["nn,wide_deep", "backprop"]`` → ``["nn", "wide_deep", "backprop"]`` (flags may repeat).

    An empty item (``1,,2``, a trailing comma) is refused: it is a typo, not an item to skip."""
    tokens = []
    for value in values:
        for token in value.split(","):
            if token.strip() == "":
                raise InvalidSpec(field, f"{value!r} has an empty item (a doubled or trailing comma?)")
            tokens.append(token.strip())
    return tokens


def parse_integer(text: str, field: str) -> int:
    """A non-negative integer written in ASCII digits (the one rule for --steps, --log-every, seeds)."""
    stripped = text.strip()
    if _INTEGER.fullmatch(stripped) is None:
        raise InvalidSpec(field, f"{text!r} is not a non-negative integer (ASCII digits only)")
    return int(stripped)


def parse_seeds(values: Iterable[str]) -> list[int]:
    """Parse ``777``, ``1-10`` (inclusive) and comma lists; refuse oversized ranges before expanding."""
    seeds: list[int] = []
    for token in split_tokens(values, "seed"):
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
    if _INTEGER.fullmatch(text) is None:
        raise InvalidSpec("seed", f"{token!r} is not a non-negative integer or a range a-b (ASCII digits)")
    value = int(text)
    if value > MAX_SEED:
        raise InvalidSpec("seed", f"{value} is too large (seeds are below 2^63)")
    return value


def parse_lrs(values: Iterable[str]) -> list[float]:
    """Parse learning rates written as decimals (``0.5``, ``1e-3``); NaN, inf, underscores, non-ASCII
    digits and overflowing literals such as ``1e309`` are refused."""
    lrs = []
    for token in split_tokens(values, "lr"):
        if token.lower().lstrip("+-") in ("nan", "inf", "infinity"):
            raise InvalidSpec("lr", f"{token!r} is not a finite number")
        if _DECIMAL.fullmatch(token) is None:
            raise InvalidSpec("lr", f"{token!r} is not a decimal number (like 0.5 or 1e-3)")
        lr = float(token)
        if not math.isfinite(lr):
            raise InvalidSpec("lr", f"{token!r} is not a finite number")
        lrs.append(lr)
    return lrs


def parse_stop_below(text: str, field: str = "--stop-below") -> float:
    """A cost threshold written as a decimal (``0.05``, ``1e-3``); NaN, inf and non-decimals refused
    (the range, > 0, is SweepSpec's)."""
    token = text.strip()
    if _DECIMAL.fullmatch(token) is None:
        raise InvalidSpec(field, f"{text!r} is not a decimal number (like 0.05 or 1e-3)")
    value = float(token)
    if not math.isfinite(value):
        raise InvalidSpec(field, f"{text!r} is not a finite number")
    return value


def parse_lr_flag(values: list[str]) -> list[float] | dict[str, Any]:
    """``--lr``: rates, or one sampled request: ``loguniform:LOW:HIGH:COUNT`` / ``uniform:LOW:HIGH:COUNT``
    (``xorjobs.spec.LrSample``'s mapping, checked there)."""
    tokens = split_tokens(values, "lr")
    sampled = [token for token in tokens if _LR_SAMPLE.fullmatch(token)]
    if not sampled:
        for token in tokens:
            if ":" in token:  # meant as a sampled form ("normal:...", "LogUniform:..."): name the real ones
                raise InvalidSpec(
                    "lr",
                    f"{token!r} is neither a rate nor a sampled form: write loguniform:LOW:HIGH:COUNT or "
                    "uniform:LOW:HIGH:COUNT (lower case)",
                )
        return parse_lrs(values)
    if len(tokens) > 1:
        raise InvalidSpec("lr", f"{sampled[0]!r} is a sampled --lr: give it alone, without other rates")
    kind, rest = _LR_SAMPLE.fullmatch(sampled[0]).groups()  # type: ignore[union-attr]
    parts = rest.split(":")
    if len(parts) != 3:
        raise InvalidSpec("lr", f"{sampled[0]!r}: write {kind}:LOW:HIGH:COUNT (like {kind}:1e-3:10:50)")
    low, high = parse_lrs([parts[0]])[0], parse_lrs([parts[1]])[0]
    count = parse_integer(parts[2], "lr")
    return {
        "sample": "uniform" if kind == "uniform" else "log_uniform",
        "low": low,
        "high": high,
        "count": count,
    }


def parse_seed_flag(values: list[str]) -> list[int] | dict[str, Any]:
    """``--seed``: seeds, or ``random:COUNT`` (COUNT distinct random seeds, ``xorjobs.spec.SeedSample``)."""
    tokens = split_tokens(values, "seed")
    sampled = [token for token in tokens if _SEED_SAMPLE.fullmatch(token)]
    if not sampled:
        return parse_seeds(values)
    if len(tokens) > 1:
        raise InvalidSpec("seed", f"{sampled[0]!r} is a sampled --seed: give it alone, without other seeds")
    count = _SEED_SAMPLE.fullmatch(sampled[0]).group(1)  # type: ignore[union-attr]
    return {"sample": "random", "count": parse_integer(count, "seed")}
