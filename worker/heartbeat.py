"""A background thread that renews a running job's lease, so a live job is never reaped.

It beats independently of the training loop's log cadence (a job may log rarely). When the database
says the attempt was fenced off (re-queued, cancelled, taken over), it records that, and the training
loop's next progress report stops the job.
"""

from __future__ import annotations

import logging
import threading

from xorjobs.store.lifecycle import LeaseLost, renew_lease

log = logging.getLogger(__name__)


class Heartbeat:
    def __init__(
        self, url: str, job_id: str, attempt: int, lease_seconds: float, interval_seconds: float
    ) -> None:
        self._url = url
        self._job_id = job_id
        self._attempt = attempt
        self._lease_seconds = lease_seconds
        self._interval = interval_seconds
        self._stop = threading.Event()
        self.lost: LeaseLost | None = None
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{job_id}", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def check(self) -> None:
        """Raise LeaseLost in the training thread when the lease is gone."""
        if self.lost is not None:
            raise self.lost

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                renew_lease(self._url, self._job_id, self._attempt, self._lease_seconds)
            except LeaseLost as lost:
                self.lost = lost
                return
            except Exception:  # a database blip: keep beating; the lease is longer than one interval
                log.warning("heartbeat of %s failed; retrying", self._job_id, exc_info=True)
