"""Which queues the live workers consume, known without a submit waiting for a broadcast.

Asking the workers is a broadcast (``inspect().active_queues()``) that always waits its whole reply
timeout, since the asker cannot know how many workers exist to answer. Asked inside every submit, it put
0.5 s on each ``POST /sweeps`` and one broadcast to every worker per submit (issue 10, section 3).

The answer only feeds a warning ("no live worker serves queue X"), so an answer a few seconds old is
good enough. A long-running process (the API) refreshes it from a background thread every
``MAX_AGE_SECONDS``: its submits read the last answer and never wait, and the workers see one
broadcast per interval whatever the submit rate. A short-lived process (an in-process CLI ``submit``)
starts no thread and asks once, when its first submit needs the answer.

Why not Celery's worker heartbeats: their events carry no queue names (only a hostname), and the
store keeps no table of workers; a cached broadcast asks the workers the very question the warning is
about, with no new moving part. A failed broadcast (the broker down) is logged, and counts as no worker
having answered, which is what the submit's warning then says.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from celery import Celery
from kombu.exceptions import OperationalError as KombuOperationalError

log = logging.getLogger(__name__)

MAX_AGE_SECONDS = 5.0
"""How old an answer may be before it is asked again (the background refresh interval)."""
REPLY_TIMEOUT_SECONDS = 0.5
"""How long one broadcast waits for the workers' replies."""


@dataclass(frozen=True)
class _Answer:
    queues: frozenset[str]
    asked_at: float  # time.monotonic()

    def age(self) -> float:
        return time.monotonic() - self.asked_at


class QueueWatch:
    """The queues live workers consume, as of the last broadcast (see the module's docstring)."""

    def __init__(
        self,
        app: Celery,
        max_age_seconds: float = MAX_AGE_SECONDS,
        reply_timeout_seconds: float = REPLY_TIMEOUT_SECONDS,
    ) -> None:
        self._app = app
        self._max_age = max_age_seconds
        self._reply_timeout = reply_timeout_seconds
        self._answer: _Answer | None = None
        self._lock = threading.Lock()  # one broadcast at a time; a caller needing one waits for it
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def serves(self, queue: str) -> bool:
        """Whether a live worker consumed ``queue`` at the last broadcast.

        With the background refresh running, this reads the last answer and returns at once (it waits
        only before the very first answer is in). Without it, it asks when the answer is older than the
        maximum age.
        """
        answer = self._answer
        if answer is None or (not self._refreshing() and answer.age() > self._max_age):
            answer = self._ask_unless_fresh()
        return answer is not None and queue in answer.queues

    def start(self) -> None:
        """Keep the answer fresh from a daemon thread until ``stop`` (for the API's lifetime)."""
        if self._refreshing():
            return
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._refresh_until_stopped, name="xorjobs-queue-watch", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            # Bounded: a broadcast stuck on an unreachable broker must not hold up the API's shutdown.
            self._thread.join(timeout=self._reply_timeout + 1.0)
            self._thread = None

    def _refreshing(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _refresh_until_stopped(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                self._answer = self._ask()
            self._stop.wait(self._max_age)

    def _ask_unless_fresh(self) -> _Answer | None:
        # Bounded wait: when another thread's broadcast hangs on an unreachable broker (kombu retries
        # its connection for seconds), a submit goes on with the answer it has rather than wait.
        if not self._lock.acquire(timeout=self._reply_timeout + 1.0):
            return self._answer
        try:
            answer = self._answer
            if answer is None or answer.age() > self._max_age:
                answer = self._answer = self._ask()
            return answer
        finally:
            self._lock.release()

    def _ask(self) -> _Answer:
        asked_at = time.monotonic()
        try:
            replies = self._app.control.inspect(timeout=self._reply_timeout).active_queues() or {}
        except (KombuOperationalError, OSError) as error:
            log.warning("cannot ask the workers which queues they consume (broker unreachable): %s", error)
            replies = {}
        except Exception:  # anything else is a bug to see in the log, not a reason to fail a submit
            log.exception("asking the workers which queues they consume failed")
            replies = {}
        queues = frozenset(entry["name"] for entries in replies.values() for entry in entries)
        return _Answer(queues, asked_at)
