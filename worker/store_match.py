"""A message whose job this worker's store does not hold: a deleted job, or another store's job?

The two need opposite answers. A deleted sweep leaves its jobs' messages on the queue: they are dropped
(acked) with one line, not one traceback each (issue 14 section 8 measured ~511). A worker pointed at
the wrong database receives messages of jobs its store never had: acking them would eat the right
workers' queue (issue 14 section 1 measured 160 messages eaten), so it hands each back untouched and
stops consuming, saying so once.

They are told apart by the store fingerprint the publisher put in the message
(``xorjobs.store.identity``): the same fingerprint as this worker's store means the store once had the
job, so it was deleted (a store loses jobs in no other way); another fingerprint means another store.
A message without one (published by an older xorjobs) is taken as deleted, the old behaviour minus the
traceback. Why not remember deleted sweep ids: it needs a table, grows forever, and still cannot tell a
foreign job from a never-deleted one; why not "does the store have any jobs at all": a fresh store and
a pruned one both have none.
"""

from __future__ import annotations

import logging
import threading
import time

from xorjobs.errors import XorjobsError
from xorjobs.store.engine import describe
from xorjobs.store.identity import store_fingerprint

log = logging.getLogger(__name__)

NOTICE_EVERY_SECONDS = 10.0
"""Dropped messages of deleted jobs: the first is named, later ones counted in one line at most this often."""


class WrongStore(XorjobsError):
    """The message was published by another store: this worker is on the wrong database."""

    exit_code = 4
    http_status = 503


def is_foreign(url: str, message_store: str | None) -> bool:
    """True when the message names a store, this worker's store is readable, and they differ."""
    if message_store is None:
        return False
    mine = store_fingerprint(url)
    return mine is not None and mine != message_store


def wrong_store_text(url: str, message_store: str | None) -> str:
    return (
        f"this worker's store {describe(url)} ({store_fingerprint(url)}) is not the store that published "
        f"the messages on its queue ({message_store}): messages are handed back untouched and this worker "
        "stops consuming. Point XORJOBS_DATABASE_URL at the store the API uses"
    )


class DroppedNotices:
    """One log line for a burst of dropped messages, however many there are."""

    def __init__(self, first: str, more: str) -> None:
        self._first = first
        self._more = more
        self._lock = threading.Lock()
        self._uncounted = 0
        self._last_line = float("-inf")

    def dropped(self, job_id: str) -> None:
        with self._lock:
            now = time.monotonic()
            if now - self._last_line < NOTICE_EVERY_SECONDS:
                self._uncounted += 1
                return
            if self._uncounted:
                log.info(self._more, self._uncounted)
            else:
                log.info(self._first, job_id)
            self._uncounted = 0
            self._last_line = now


DELETED = DroppedNotices(
    "job %s is not in the store (its sweep was deleted): message dropped; more such messages are "
    "counted, not listed",
    "dropped %d more message(s) of jobs no longer in the store (deleted sweeps)",
)
"""Messages of deleted jobs, in this process (the worker's consumer; a pool child for its own)."""

STRAYS = DroppedNotices(
    "job %s belongs to another store: message dropped (that store's recovery re-publishes it); more "
    "such messages are counted, not listed",
    "dropped %d more message(s) of another store's jobs",
)
"""Stray messages of another store, met by a worker that has run its own store's jobs."""
