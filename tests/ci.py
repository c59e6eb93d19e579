"""The one rule for a test that cannot run here: skip locally, fail in CI.

CI must never pass by silently skipping what it was meant to test (a missing Redis, a missing tool, a
CPU whose kernels the bit-exact tests were not measured on), while a laptop without those still runs the
rest. ``CI`` is parsed as a boolean, the way CI services set it (``CI=true``); ``CI=false``, ``CI=0`` or
an empty ``CI`` mean "not CI".
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import NoReturn

import pytest

TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
"""Values of ``CI`` that mean CI (case-insensitive); anything else, unset included, means local."""


def in_ci(environ: Mapping[str, str] = os.environ) -> bool:
    return environ.get("CI", "").strip().lower() in TRUE_WORDS


IN_CI = in_ci()


def unavailable(reason: str) -> NoReturn:
    """Something the test needs is missing (``reason`` says what): fail under CI, skip locally."""
    if IN_CI:
        pytest.fail(f"{reason} (CI is set: CI must test this, so a missing part is a failure)")
    pytest.skip(reason)


def require(available: bool, what: str) -> None:
    """``unavailable`` unless ``available``; ``what`` names the missing part ("Redis at ...")."""
    if not available:
        unavailable(f"{what} is not available")
