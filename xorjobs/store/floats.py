"""Non-finite floats in the store and in JSON.

SQLite silently stores a bare NaN as NULL, and bare NaN is not valid JSON, so a cost is stored as a
double plus an explicit kind (the pattern of optuna's ``trial_intermediate_values``), and every JSON the
CLI or API emits writes non-finite numbers as the strings "nan", "inf" and "-inf".
"""

from __future__ import annotations

import math
from enum import IntEnum
from typing import Any


class FloatKind(IntEnum):
    FINITE = 0
    NAN = 1
    POS_INF = 2
    NEG_INF = 3


def encode_float(value: float) -> tuple[float | None, FloatKind]:
    """``(value for a double column, kind)``; non-finite values store NULL and say so in the kind."""
    if math.isnan(value):
        return None, FloatKind.NAN
    if math.isinf(value):
        return None, FloatKind.POS_INF if value > 0 else FloatKind.NEG_INF
    return value, FloatKind.FINITE


def decode_float(value: float | None, kind: int) -> float:
    if kind == FloatKind.NAN:
        return math.nan
    if kind == FloatKind.POS_INF:
        return math.inf
    if kind == FloatKind.NEG_INF:
        return -math.inf
    assert value is not None
    return value


def json_safe(value: Any) -> Any:
    """Replace non-finite floats (recursively) by "nan"/"inf"/"-inf" so the result is RFC 8259 JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    return value
