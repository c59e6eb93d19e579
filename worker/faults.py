"""Test-only fault injection behind one seam, inert unless ``XORJOBS_TEST_FAULTS=1`` (a test asserts it is
off by default).

Fault tests need a worker to die at a known point of a known job (a poison job that kills its worker on
every attempt; a crash between the last cost write and the final commit). ``XORJOBS_FAULT`` names it:
``point=before_final_commit;seed=4242;action=exit[;attempts=1]`` — the job with that seed, at that
point, on the listed attempts (default: every attempt), exits (``exit``: ``os._exit(1)``) or kills its
own process (``sigkill``).

The seam: the production path calls ``at(point, claim)`` and nothing else. Which implementation that is
gets decided once, when this module is imported: ``_inert`` (returns at once, reads nothing) unless the
test switch is on, and the parsing, environment reads and process killing live only in ``_injected``.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from typing import Protocol

POINTS = ("after_claim", "before_final_commit")


class FaultTarget(Protocol):
    """What a fault point is told about the job passing it (a ``Claim`` fits)."""

    @property
    def seed(self) -> int: ...

    @property
    def attempt(self) -> int: ...


def enabled() -> bool:
    return os.environ.get("XORJOBS_TEST_FAULTS") == "1"


def _parse(text: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in text.split(";") if "=" in part)


def _inert(point: str, seed: int, attempt: int) -> None:
    return None


def _injected(point: str, seed: int, attempt: int) -> None:
    """Act if a test asked for a fault here; otherwise return at once."""
    if not enabled():
        return
    fault = _parse(os.environ.get("XORJOBS_FAULT", ""))
    if fault.get("point") != point or fault.get("seed") != str(seed):
        return
    attempts = fault.get("attempts")
    if attempts is not None and str(attempt) not in attempts.split(","):
        return
    if fault.get("action") == "sigkill":
        os.kill(os.getpid(), signal.SIGKILL)
    os._exit(1)


fault_point: Callable[[str, int, int], None] = _injected if enabled() else _inert
"""The one fault seam, chosen at import (``fault_point(point, seed, attempt)``)."""


def at(point: str, target: FaultTarget) -> None:
    """The production path's only call into this module."""
    fault_point(point, target.seed, target.attempt)
