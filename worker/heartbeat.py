"""A background thread that renews the leases of the jobs a process trains, so a live job is never reaped.

It beats independently of the training loop's log cadence (a job may log rarely). Members whose attempt
was fenced off (re-queued, cancelled, taken over) are recorded in ``lost``; once every member is lost,
``check`` raises in the training thread at its next progress report, and training stops.

Beats keep a start-to-start cadence (a slow renewal does not push the next one back), and the thread
measures what matters for the lease: the longest time between two successful renewals
(``longest_gap_seconds``), with a warning when it passes half the lease, the margin that
``Settings`` keeps with ``MIN_LEASE_PER_HEARTBEAT``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence

from xorjobs.errors import LeaseLost
from xorjobs.store.claims import Claim
from xorjobs.store.packs import renew_pack

log = logging.getLogger(__name__)


class Heartbeat:
    def __init__(
        self, url: str, claims: Sequence[Claim], lease_seconds: float, interval_seconds: float
    ) -> None:
        self._url = url
        self._claims = list(claims)
        self._lease_seconds = lease_seconds
        self._interval = interval_seconds
        self._stop = threading.Event()
        self.lost: set[str] = set()
        self.longest_gap_seconds = 0.0
        """The longest time between two renewals (the claim counting as the first) so far."""
        self._renewed_at = time.monotonic()
        self._failed_beats = 0
        """Beats that failed since the last renewal (the line that says it recovered counts them)."""
        self._thread = threading.Thread(target=self._run, name="xorjobs-heartbeat", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._renewed_at = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def check(self) -> None:
        """Raise LeaseLost in the training thread when no member is still owned."""
        if len(self.lost) == len(self._claims):
            # A count for a pack: its log line names the leader, and 512 ids made one line of 11 kB.
            who = next(iter(self.lost)) if len(self.lost) == 1 else f"all {len(self.lost)} jobs"
            raise LeaseLost(f"{who}: this attempt no longer owns the job(s)")

    def _run(self) -> None:
        next_beat = time.monotonic() + self._interval
        while not self._stop.wait(max(0.0, next_beat - time.monotonic())):
            next_beat = time.monotonic() + self._interval
            owned = [claim for claim in self._claims if claim.job_id not in self.lost]
            try:
                self.lost |= renew_pack(self._url, owned, self._lease_seconds)
            except Exception as error:  # a database blip: keep beating; the lease is longer than one interval
                # One line per failed beat, no traceback: an outage of a minute is 120 of them at 0.5 s.
                self._failed_beats += 1
                log.warning("heartbeat failed; retrying: %s", _one_line(error))
            else:
                if self._failed_beats:
                    log.warning(
                        "heartbeat: leases renewed again after %d failed beat(s), %.1f s since the last "
                        "renewal",
                        self._failed_beats,
                        time.monotonic() - self._renewed_at,
                    )
                    self._failed_beats = 0
                self._record_renewal()
            if len(self.lost) == len(self._claims):
                return

    def _record_renewal(self) -> None:
        now = time.monotonic()
        gap, self._renewed_at = now - self._renewed_at, now
        self.longest_gap_seconds = max(self.longest_gap_seconds, gap)
        if gap > self._lease_seconds / 2:
            log.warning(
                "heartbeat: %.1f s between lease renewals (lease %.1f s, beat every %.1f s): this worker is "
                "short of CPU or its store is slow, and its jobs may be taken over",
                gap,
                self._lease_seconds,
                self._interval,
            )


def _one_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
