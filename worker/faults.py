"""Test-only fault injection, inert unless ``XORJOBS_TEST_FAULTS=1`` (a test asserts it is off by default).

Fault tests need a worker to die at a known point of a known job (a poison job that kills its worker on
every attempt; a crash between the last cost write and the final commit). ``XORJOBS_FAULT`` names it:
``point=before_final_commit;seed=4242;action=exit[;attempts=1]`` — the job with that seed, at that
point, on the listed attempts (default: every attempt), exits (``exit``: ``os._exit(1)``) or kills its
own process (``sigkill``).
"""

from __future__ import annotations

import os
import signal

POINTS = ("after_claim", "before_final_commit")


def enabled() -> bool:
    return os.environ.get("XORJOBS_TEST_FAULTS") == "1"


def _parse(text: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in text.split(";") if "=" in part)


def fault_point(point: str, seed: int, attempt: int) -> None:
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
