"""The project's shared constants and small policies, each defined here once.

Every process imports this module (API, workers, CLI, the models, the dashboard through the API), so it
imports nothing beyond the standard library: the CLI's HTTP path, which loads neither the store nor torch,
and ``xorjobs.models``, which loads no pydantic, can both use it. A value that belongs to one concept
only (a pydantic limit, a Settings field) stays with that concept; what is written out in more than one
module lives here, with a docstring saying what it means and why it has that value.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal, get_args

# --- the training contract (the seed document's defaults) ----------------------------------------

Variant = Literal["nn", "wide_deep", "backprop"]
"""The three seed scripts: ``xor-nn``, ``xor-nn-wide-deep`` and the hand-written ``xor-backprop``."""

VARIANTS: tuple[Variant, ...] = get_args(Variant)
"""Every variant, in the default expansion order of a sweep (and of ``xorjobs run``)."""

DEFAULT_STEPS = 10001
"""Training steps of the seed scripts (``for step in range(10001)``)."""

DEFAULT_LOG_EVERY = 100
"""The seed scripts print the cost every 100 steps; a run shorter than that logs at step 0 only."""

DEFAULT_SEED = 777
"""The seed scripts' ``torch.manual_seed(777)``."""

DEFAULT_LR = 1.0
"""The seed scripts' SGD learning rate."""

MAX_COST_POINTS_PER_JOB = 10_001
"""Most logged costs one job may store: every step of the seed's 10,001-step run. ``--steps 1000000
--log-every 1`` would write a million rows per job; the sweep is refused instead, naming --log-every."""

MAX_COST_POINTS_PER_SWEEP = 2_000_000
"""Most logged costs one sweep may store (about 100 MB of rows). The largest sweep at the seed's interval,
10,000 jobs x 101 points, fits twice over; 10,000 jobs logging 10,001 points each (100 M rows) do not."""


def cost_points(steps: int, log_every: int) -> int:
    """How many costs a job of ``steps`` steps logs: one at every step with ``step % log_every == 0``."""
    return (steps - 1) // log_every + 1 if steps >= 1 and log_every >= 1 else 0


# --- job states -------------------------------------------------------------------------------------


class JobState(StrEnum):
    """A job's state as the store keeps it and every JSON shows it (the members compare equal to strings)."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


JOB_STATES: tuple[JobState, ...] = tuple(JobState)
"""Every state, in the order the CLI, the API's counts and the dashboard show them."""

TERMINAL_STATES: frozenset[JobState] = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED})
"""States a job never leaves by itself; a sweep is finished when all its jobs are in one of them.
(``retry`` moves a failed or cancelled job back to queued: that is a new submission, not a transition.)"""


def finished_count(counts: dict[str, int]) -> int:
    """How many of a sweep's per-state ``counts`` (state -> number of jobs) are terminal."""
    return sum(counts.get(state, 0) for state in TERMINAL_STATES)


# --- ids --------------------------------------------------------------------------------------------

SWEEP_ID_PREFIX = "sw-"
"""Sweep ids start with this, job ids with ``JOB_ID_PREFIX``: one command (``cancel``) takes either."""

JOB_ID_PREFIX = "job-"
"""See ``SWEEP_ID_PREFIX``."""

# --- the store --------------------------------------------------------------------------------------

IDS_PER_STATEMENT = 500
"""Most ids bound into one ``IN (...)`` list. SQLite before 3.32 allows 999 bound parameters per
statement and Postgres 65,535; 500 stays under both with room for the statement's other parameters."""

ERROR_MAX_CHARS = 4000
"""A failed job's stored error (a traceback, say) is cut to this many characters: enough for the
exception and its last frames, small enough that a sweep of 10,000 failures stays a small table."""


def clip_error(error: str) -> str:
    """The error as stored: at most ``ERROR_MAX_CHARS`` characters."""
    return error[:ERROR_MAX_CHARS]


# --- retries ----------------------------------------------------------------------------------------


def out_of_attempts_error(max_attempts: int) -> str:
    """The error of a job whose worker died or lost it ``max_attempts`` times (the rule that counts the
    attempts is ``Job.attempts_used`` in ``xorjobs.store.tables``)."""
    return (
        f"max_attempts: the job's worker died or lost it {max_attempts} times (the limit); not retried again"
    )


# --- verify (issue 12 §6) ---------------------------------------------------------------------------

VERIFY_TASK = "xorjobs.verify_job"
"""The Celery task that re-runs a stored job solo on a worker for ``POST /jobs/{id}/verify`` (the API never
imports torch, so it hands the re-run to a worker of the job's queue and reads the report from the store)."""

VERIFY_WAIT_SECONDS = 120.0
"""How long ``POST /jobs/{id}/verify`` waits for a worker's report by default: a worker answers after the
job it is training, and a 10,001-step solo re-run takes a few seconds on a busy 2-core machine."""

MAX_VERIFY_WAIT_SECONDS = 600.0
"""The longest wait a caller may ask for (``?timeout=``); the HTTP client waits a little longer."""
