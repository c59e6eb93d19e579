"""What putting a job back to ``queued`` writes, for every path that does it (issue 13 §2).

The reaper (a lease that ran out), a release (Ctrl-C, a worker's shutdown), a hand-back (a store outage:
the task's Reject) and ``retry`` all write these values, so a queued job never shows the ``started_at``
or ``worker`` of an attempt that no longer runs (``xorjobs show`` said "started 10:02 on cpu-1@host-a" of
a job waiting in the queue). The attempt counter is kept: it is the fencing token. The next claim writes
its own start and worker (``claims.claim_values``).
"""

from __future__ import annotations

from xorjobs.store.tables import JobState


def requeue_values() -> dict[str, object]:
    """Queued, with no lease, no message yet (the relay publishes it), and no trace of the last attempt."""
    return {
        "state": JobState.QUEUED,
        "lease_expires_at": None,
        "published_at": None,
        "started_at": None,
        "worker": None,
    }
