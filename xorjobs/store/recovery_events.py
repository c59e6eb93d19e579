"""What the workers' recovery did, counted in the store: the recovery runs on every host, so only the
store sees all of it (``GET /metrics`` serves these as counters).

One row per action, bumped inside the transaction that does the action: a re-queue that rolls back is
not counted, and a committed one is counted once whichever host did it. The rows are few and written
only when recovery acts (a worker died, a message was lost), so many hosts share them without contention
worth the name; an upsert creates a row on first use, so the migration seeds nothing.
"""

from __future__ import annotations

from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as postgres_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from xorjobs.store.engine import read_session
from xorjobs.store.tables import RecoveryEvent


class RecoveryAction(StrEnum):
    REQUEUED = "requeued"  # a running job whose lease expired went back to the queue
    FAILED_OUT_OF_ATTEMPTS = "failed_out_of_attempts"  # ... or failed, its attempts used up
    REPUBLISHED = "republished"  # a queued job with no message on the broker was published again


def count_recovery(session: Session, action: RecoveryAction, times: int) -> None:
    """Add ``times`` to ``action``'s counter, in the caller's transaction (nothing when ``times`` is 0)."""
    if times <= 0:
        return
    insert = postgres_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    statement = insert(RecoveryEvent).values(action=action.value, count=times)
    session.execute(
        statement.on_conflict_do_update(
            index_elements=[RecoveryEvent.action], set_={"count": RecoveryEvent.count + times}
        )
    )


def recovery_counts(url: str) -> dict[RecoveryAction, int]:
    """Every action's count so far (zeros included)."""
    with read_session(url) as session:
        rows = session.execute(select(RecoveryEvent.action, RecoveryEvent.count)).all()
    counts = dict.fromkeys(RecoveryAction, 0)
    for action, count in rows:
        if action in RecoveryAction.__members__.values():
            counts[RecoveryAction(action)] = int(count)
    return counts
