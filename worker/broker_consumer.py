"""Celery's consumer, made to survive a broker that refuses writes (Redis at ``maxmemory``) without leaking.

At ``maxmemory`` Redis refuses every command that may grow its memory. The consumer's start then fails
after the connection is made: registering it with the event loop restores unacknowledged messages
under a lock taken with ``SET`` (kombu.transport.redis ``QoS.restore_visible``), and Redis refuses the
``SET``. Celery's ``Consumer.connect`` raises before it keeps the connection, nothing closes it, and
the restart loop opens the next one at once: a worker leaked ~6 Redis connections a second (277 after
50 s, 3,600 in 12 minutes) with a ``RestartFreqExceeded`` traceback a second, and the connections
stayed until it exited (issue 14 §5). Here a connection that failed to start is closed, the log says
once that the broker is out of memory (and again only after it had room), and retries are paced.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from celery.worker.consumer import Consumer

log = logging.getLogger(__name__)

OUT_OF_MEMORY_RETRY_SECONDS = 1.0
"""Pause between consumer starts while the broker is out of memory: under Celery's restart limit
(5 in 1 s, past which it logs a traceback), and short enough that the queue drains within seconds of
memory freeing."""


def is_broker_out_of_memory(error: BaseException) -> bool:
    """Redis's answer to a write at ``maxmemory`` (``OOM command not allowed when used memory >
    'maxmemory'``), whichever wrapper carries it."""
    link: BaseException | None = error
    while link is not None:
        if type(link).__name__ == "OutOfMemoryError" or "used memory > 'maxmemory'" in str(link):
            return True
        link = link.__cause__ or link.__context__
    return False


class BrokerConsumer(Consumer):
    """``Consumer`` that closes a connection whose start failed, and says plainly when the broker is full."""

    _starting: Any = None
    _out_of_memory_since: float | None = None

    def connection_for_read(self, heartbeat: float | None = None) -> Any:
        connection = super().connection_for_read(heartbeat=heartbeat)
        self._starting = connection  # Consumer.connect may raise after this and before it keeps it
        return connection

    def connect(self) -> Any:
        try:
            connection = super().connect()
        except BaseException:
            self._close_starting()
            raise
        self._starting = None
        return connection

    def loop_args(self) -> Any:
        # Called once every start step has run, as the event loop begins: only now is the broker known
        # to have room. A connection alone is not enough: the start's later writes (the pidbox's LLEN)
        # may still be refused, and saying "room again" at connect then said "out of memory" twice.
        if self._out_of_memory_since is not None:
            log.warning(
                "consumer: the broker has room again after %.0f s out of memory; consuming",
                time.monotonic() - self._out_of_memory_since,
            )
            self._out_of_memory_since = None
        return super().loop_args()

    def on_connection_error_before_connected(self, exc: Exception) -> None:
        if not self._out_of_memory(exc):
            super().on_connection_error_before_connected(exc)

    def on_connection_error_after_connected(self, exc: Exception) -> None:
        # A start that failed later (kombu declares the queues with LLEN inside MULTI, refused too):
        # Celery closes that connection itself.
        self._out_of_memory(exc)
        super().on_connection_error_after_connected(exc)

    def _out_of_memory(self, exc: BaseException) -> bool:
        """Say once that the broker is out of memory, and pace the retries; False for other errors."""
        if not is_broker_out_of_memory(exc):
            return False
        if self._out_of_memory_since is None:
            self._out_of_memory_since = time.monotonic()
            text = str(exc).strip()
            log.warning(
                "consumer: the broker is out of memory (Redis at maxmemory refuses writes: %s); this "
                "worker retries every %.0f s and consumes once it has room. Free memory on the broker "
                "or raise its maxmemory.",
                text.splitlines()[0] if text else type(exc).__name__,
                OUT_OF_MEMORY_RETRY_SECONDS,
            )
        time.sleep(OUT_OF_MEMORY_RETRY_SECONDS)
        return True

    def _close_starting(self) -> None:
        connection, self._starting = self._starting, None
        if connection is not None:
            try:
                connection.close()
            except Exception:  # closing a connection the broker already refuses: nothing left to do
                log.debug("closing a consumer connection that failed to start", exc_info=True)
