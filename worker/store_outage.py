"""What a worker does when the store fails under it: retry with backoff, then hand the message back.

Only a job's own failure fails it: its training raised, it ran past its time limit, or its attempts
ran out. A transient store error (``xorjobs.store.retry.is_transient_store_error``: a lost connection,
a deadlock, "database is locked", a full disk, Postgres down) is the store's failure, not the job's,
so the worker retries the transaction; if the store stays away, the job goes back to the queue and
the Celery message is rejected back onto the queue (``Reject(requeue=True)``), never acked. With
``acks_late`` a task that *raised* would be acked (``task_acks_on_failure_or_timeout``): that ack of a
message whose job the store never heard of is what stranded jobs in ``queued`` (issue 14 section 1).
``self.retry()`` is no better: it publishes a new message and acks the old one, and the new one is lost
with the next broker restart while the store still says published.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from xorjobs.errors import XorjobsError
from xorjobs.store.retry import DEFAULT_DEADLINE_SECONDS, is_transient_store_error, retrying

T = TypeVar("T")

BEFORE_CLAIM_DEADLINE_SECONDS = DEFAULT_DEADLINE_SECONDS
"""How long a delivery retries reading and claiming its job before handing the message back: the
worker holds nothing yet, so the message is better back on the queue than held through a long outage."""

RESULT_DEADLINE_SECONDS = 300.0
"""How long a finished attempt retries storing its result (or its own failure). The result is this
attempt's work, valid as long as the attempt owns the job (the write is fenced), whether or not its
lease ran out meanwhile, so it is worth waiting for a store that restarts or a lock that is released."""

HAND_BACK_DEADLINE_SECONDS = 10.0
"""How long handing a claimed job back is tried, once the store already failed for the whole deadline."""


class StoreOutage(XorjobsError):
    """The store stayed unreachable (or locked, or full) past the deadline: hand the message back."""

    exit_code = 4
    http_status = 503


def store_call(operation: Callable[[], T], what: str, deadline_seconds: float) -> T:
    """``retrying`` for one idempotent store transaction; a transient error past the deadline becomes
    ``StoreOutage`` (any other error passes through unchanged)."""
    try:
        return retrying(operation, what=what, deadline_seconds=deadline_seconds)
    except Exception as error:
        if is_transient_store_error(error):
            raise StoreOutage(f"{what}: the store stayed unavailable for {deadline_seconds:.0f}s") from error
        raise


def is_store_outage(error: BaseException) -> bool:
    """True for a store error that is not the job's fault (transient, or already given up on)."""
    return isinstance(error, StoreOutage) or is_transient_store_error(error)
