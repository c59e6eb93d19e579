"""The recovery loop that runs beside every worker, and the supervisor that keeps it running.

Why beside every worker: recovery then needs no extra service (no beat to forget to deploy), it runs
wherever jobs can run, and the conditional updates in ``xorjobs.store.recovery`` make many reapers safe
(each expired job is re-queued by exactly one of them). A prefork worker runs it in a *spawned* process
of its own, not a thread of the main process: the main process forks pool children at any time, and a
child forked while a thread held a SQLite connection (or a lock) inherits SQLite's in-memory lock state
and then reports "database is locked" forever (seen in the poison-job test). A thread of the main
process that holds no connection supervises it: when the process dies it is restarted, and the log
says so. Each pass:
1. re-queues jobs whose lease expired (their worker died) or fails them after max_attempts;
2. relays the outbox: claims the queued jobs never published, publishes them, releases what the broker
   refused; the claim makes N workers' relays publish each job once (issue 10 section 8);
3. takes a census of the broker (Redis only, ``worker/broker_census.py``) and re-publishes queued jobs
   whose message is gone: lost with a delivery acked after a store error, a Redis restart, or a relay
   that died mid-way (issue 14 section 1). A job counts as lost only when two passes in a row saw it
   queued, published at the same instant, and absent from the broker; the re-publish is a
   compare-and-set on that instant, so N relays send one new message.
"""

from __future__ import annotations

import datetime as dt
import logging
import multiprocessing
import os
import threading
import time
from typing import TYPE_CHECKING

from celery import Celery

from xorjobs.errors import Unreachable
from xorjobs.queue import publish
from xorjobs.settings import Settings
from xorjobs.store.clock import utcnow
from xorjobs.store.recovery import (
    PublishClaim,
    claim_republish,
    claim_unpublished,
    published_queued_counts,
    published_queued_jobs,
    reap_expired_leases,
    release_publish_claim,
)
from xorjobs.store.retry import DEFAULT_DEADLINE_SECONDS
from xorjobs.store.workers import WorkerIdentity
from xorjobs.worker import broker_census

if TYPE_CHECKING:
    import redis

log = logging.getLogger(__name__)

CENSUS_EVERY_SECONDS = 60.0
"""A full census also runs when the oldest published queued job is older than this, at most this
often. The cheap count (store vs broker) proves a loss only while the queue holds no messages of
finished jobs (a pack leaves those behind); this bound finds a lost job in a busy queue too. It only
triggers a *check*: nothing is re-published without the broker's evidence, so a long queue whose jobs
legitimately wait an hour gets no duplicates."""

SUSPECT_GRACE_REAP_INTERVALS = 3
SUSPECT_GRACE_MIN_SECONDS = 5.0


def suspect_grace_seconds(settings: Settings) -> float:
    """How long a job must have been seen without a message, by this census's own clock, before it is
    re-published: longer than a relay takes between claiming a row (``published_at`` set) and its
    message reaching Redis. Two passes alone were not enough on a loaded machine: a relay still
    publishing its 200 claimed jobs was overtaken by the others' census, which re-published 66 of them
    (measured in a clean-clone CI run). The observer's monotonic clock, not ``published_at``, measures
    it, so no two hosts' clocks are compared."""
    return max(SUSPECT_GRACE_REAP_INTERVALS * settings.reap_interval_seconds, SUSPECT_GRACE_MIN_SECONDS)


RESTART_BACKOFF_MAX_SECONDS = 60.0
"""A recovery process that dies again at once is restarted after a growing pause, up to this."""


def stale_delivery_seconds(settings: Settings) -> float:
    """How long a delivered, unacked message may sit before its job counts as having no message.

    A live consumer claims the job within a lease, or retries a store outage for up to the runner's
    deadline and then hands the message back; past both (and two reap passes), the consumer is dead.
    """
    return DEFAULT_DEADLINE_SECONDS + settings.lease_seconds + 2 * settings.reap_interval_seconds


class BrokerCensus:
    """Finds queued jobs with no message on a Redis broker (confirmed over two passes)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._client: redis.Redis | None = broker_census.redis_client(settings.broker_url)
        # queue -> job id -> (the published_at it was seen missing with, when this census first saw it)
        self._suspects: dict[str, dict[str, tuple[dt.datetime, float]]] = {}
        self._last_full: dict[str, float] = {}

    @property
    def available(self) -> bool:
        return self._client is not None

    def lost_jobs(self, url: str) -> dict[str, dt.datetime]:
        """Queued jobs seen without a message (with the same published_at) in this pass and the previous
        one, and first seen so at least ``suspect_grace_seconds`` ago -> their published_at."""
        if self._client is None:
            return {}
        lost: dict[str, dt.datetime] = {}
        counts = published_queued_counts(url)
        for queue in set(self._suspects) - set(counts):
            del self._suspects[queue]
        for queue, (count, oldest) in counts.items():
            messages = broker_census.message_count(self._client, queue)
            if messages >= count and not self._full_census_due(queue, oldest):
                self._suspects.pop(queue, None)
                continue
            self._last_full[queue] = time.monotonic()
            jobs = published_queued_jobs(url, queue)  # the store first: a job published later is present
            present = broker_census.job_ids_present(
                self._client, queue, stale_delivery_seconds(self._settings)
            )
            previous = self._suspects.get(queue, {})
            now = time.monotonic()
            missing: dict[str, tuple[dt.datetime, float]] = {}
            for job_id, at in jobs.items():
                if job_id in present:
                    continue
                seen_at, first_seen = previous.get(job_id, (at, now))
                missing[job_id] = (at, first_seen if seen_at == at else now)
            grace = suspect_grace_seconds(self._settings)
            lost |= {
                job_id: at
                for job_id, (at, first_seen) in missing.items()
                if job_id in previous and now - first_seen >= grace
            }
            self._suspects[queue] = missing
        return lost

    def _full_census_due(self, queue: str, oldest: dt.datetime | None) -> bool:
        if queue in self._suspects:
            return True  # confirm (or clear) the previous pass's suspects
        if oldest is None or (utcnow() - oldest).total_seconds() < CENSUS_EVERY_SECONDS:
            return False
        return time.monotonic() - self._last_full.get(queue, float("-inf")) >= CENSUS_EVERY_SECONDS


def publish_claimed(app: Celery, url: str, claim: PublishClaim) -> int:
    """Publish the claimed jobs; put the ones the broker did not take back in the outbox."""
    if not claim.jobs:
        return 0
    try:
        published = publish(app, claim.jobs)
    except Unreachable:
        published = []
    refused = [job.job_id for job in claim.jobs if job.job_id not in set(published)]
    if refused:
        release_publish_claim(url, refused, claim.marker)
    return len(published)


def recover_once(settings: Settings, app: Celery, census: BrokerCensus, publish_grace_seconds: float) -> None:
    """One recovery pass: reap expired leases, relay the outbox, re-publish what the broker lost."""
    url = settings.resolved_database_url
    requeued, failed = reap_expired_leases(url, settings.max_attempts)
    if requeued or failed:
        log.warning(
            "recovery: re-queued %d expired jobs, failed %d out of attempts", len(requeued), len(failed)
        )
    published = publish_claimed(app, url, claim_unpublished(url, older_than_seconds=publish_grace_seconds))
    if published:
        log.info("recovery: published %d queued jobs the broker did not have", published)
    lost = census.lost_jobs(url)
    if lost:
        republished = publish_claimed(app, url, claim_republish(url, lost))
        log.warning(
            "recovery: %d queued job(s) had no message on the broker (a delivery lost to a store error, "
            "or a broker restart); published %d again",
            len(lost),
            republished,
        )


class RecoveryLoop(threading.Thread):
    def __init__(self, settings: Settings, app: Celery) -> None:
        super().__init__(name="xorjobs-recovery", daemon=True)
        self._settings = settings
        self._app = app
        self._stop_event = threading.Event()

    def run(self) -> None:
        census = BrokerCensus(self._settings)
        interval = self._settings.reap_interval_seconds
        failing = False
        while not self._stop_event.wait(interval):
            try:
                recover_once(self._settings, self._app, census, publish_grace_seconds=interval)
            except Exception as error:  # the store or broker is down: try again next pass
                if not failing:  # one line per outage, not one per pass
                    log.warning("recovery pass failed (%s); retrying every %.1fs", _one_line(error), interval)
                failing = True
            else:
                if failing:
                    log.info("recovery passes succeed again")
                failing = False

    def stop(self) -> None:
        self._stop_event.set()


def _one_line(error: BaseException) -> str:
    text = str(getattr(error, "orig", None) or error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _recovery_process_main(
    parent_pid: int, settings: Settings, identity: WorkerIdentity | None = None
) -> None:
    """Entry point of the spawned recovery process: loop until the worker that started it is gone."""
    from xorjobs.queue import make_celery
    from xorjobs.worker.registration import RegistrationHeartbeat

    logging.basicConfig(level=logging.INFO, format="[%(asctime)s: %(levelname)s/recovery] %(message)s")
    if identity is not None:  # the fleet view's heartbeat beats here: this process may hold connections
        RegistrationHeartbeat(settings, identity).start()
    loop = RecoveryLoop(settings, make_celery(settings))
    loop.start()
    while os.getppid() == parent_pid:
        loop.join(timeout=1.0)
    loop.stop()


def start_recovery_process(
    settings: Settings, identity: WorkerIdentity | None = None
) -> multiprocessing.process.BaseProcess:
    """Start the recovery loop in a fresh (spawned, not forked) process; it exits with its parent.

    ``settings`` travel as the process's argument: a spawned process re-imports everything, and the
    environment need not hold what a caller built in code.
    """
    context = multiprocessing.get_context("spawn")
    process = context.Process(
        target=_recovery_process_main,
        args=(os.getpid(), settings, identity),
        name="xorjobs-recovery",
        daemon=True,
    )
    process.start()
    return process


class RecoverySupervisor(threading.Thread):
    """Keeps one recovery process alive beside a worker: restarts it when it dies, and logs it."""

    def __init__(
        self, settings: Settings, check_seconds: float = 1.0, identity: WorkerIdentity | None = None
    ) -> None:
        super().__init__(name="xorjobs-recovery-supervisor", daemon=True)
        self._settings = settings
        self.identity = identity  # the worker's row in the fleet view, beaten by the recovery process
        self._check_seconds = check_seconds
        self._stop_event = threading.Event()
        self._lock = threading.Lock()
        self.process: multiprocessing.process.BaseProcess | None = None
        self.restarts = 0

    def run(self) -> None:
        backoff = self._check_seconds
        started_at = time.monotonic()
        with self._lock:
            self.process = start_recovery_process(self._settings, self.identity)
        log.info("recovery process %s started", self.process.pid)
        while not self._stop_event.wait(self._check_seconds):
            with self._lock:
                process = self.process
                if process is None or process.is_alive() or self._stop_event.is_set():
                    continue
                process.join(timeout=0)  # reap it: a dead child must not linger as a zombie
                # Quick deaths in a row (a broken setting, say) wait longer each time before a restart.
                backoff = self._check_seconds if time.monotonic() - started_at > 60 else backoff * 2
                backoff = min(backoff, RESTART_BACKOFF_MAX_SECONDS)
            log.error(
                "recovery process %s exited with code %s; restarting it in %.0fs",
                process.pid,
                process.exitcode,
                backoff,
            )
            if self._stop_event.wait(backoff):
                return
            with self._lock:
                self.process = start_recovery_process(self._settings, self.identity)
                self.restarts += 1
                started_at = time.monotonic()
            log.warning("recovery process restarted (pid %s, restart %d)", self.process.pid, self.restarts)

    def stop(self) -> None:
        self._stop_event.set()
        with self._lock:
            if self.process is not None and self.process.is_alive():
                self.process.terminate()
