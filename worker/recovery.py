"""The recovery loop that runs beside every worker.

Why beside every worker: recovery then needs no extra service (no beat to forget to deploy), it runs
wherever jobs can run, and the conditional updates in ``xorjobs.store.recovery`` make many reapers safe
(each expired job is re-queued by exactly one of them). A prefork worker runs it in a *spawned* process
of its own, not a thread of the main process: the main process forks pool children at any time, and a
child forked while a thread held a SQLite connection (or a lock) inherits SQLite's in-memory lock state
and then reports "database is locked" forever (seen in the poison-job test). Each pass:
1. re-queues jobs whose lease expired (their worker died) or fails them after max_attempts;
2. notices a Redis restart (its ``run_id`` changes; without persistence it lost every message) and
   marks the queued jobs unpublished;
3. publishes every queued job the broker does not have (the outbox).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading

from celery import Celery

from xorjobs.queue import publish
from xorjobs.settings import Settings
from xorjobs.store.recovery import mark_queued_unpublished, reap_expired_leases, unpublished_jobs
from xorjobs.store.sweeps import mark_published

log = logging.getLogger(__name__)


def broker_run_id(broker_url: str | None) -> str | None:
    """Redis's ``run_id`` (new on every restart), or None for other brokers or when unreachable."""
    if not broker_url or not broker_url.startswith(("redis://", "rediss://")):
        return None
    import redis

    try:
        client = redis.Redis.from_url(broker_url, socket_timeout=2, socket_connect_timeout=2)
        return str(client.info("server")["run_id"])
    except redis.RedisError:
        return None


def recover_once(
    settings: Settings, app: Celery, publish_grace_seconds: float, last_run_id: str | None
) -> str | None:
    """One recovery pass; returns the broker run_id it saw (to compare on the next pass)."""
    url = settings.resolved_database_url
    requeued, failed = reap_expired_leases(url, settings.max_attempts)
    if requeued or failed:
        log.warning(
            "recovery: re-queued %d expired jobs, failed %d out of attempts", len(requeued), len(failed)
        )
    run_id = broker_run_id(settings.broker_url)
    if run_id is not None and last_run_id is not None and run_id != last_run_id:
        lost = mark_queued_unpublished(url)
        log.warning("recovery: the broker restarted; re-publishing %d queued jobs", lost)
    pending = unpublished_jobs(url, older_than_seconds=publish_grace_seconds)
    if pending:
        published = publish(app, pending)
        mark_published(url, published)
        log.info("recovery: published %d queued jobs the broker did not have", len(published))
    return run_id if run_id is not None else last_run_id


class RecoveryLoop(threading.Thread):
    def __init__(self, settings: Settings, app: Celery) -> None:
        super().__init__(name="xorjobs-recovery", daemon=True)
        self._settings = settings
        self._app = app
        self._stop_event = threading.Event()

    def run(self) -> None:
        run_id = broker_run_id(self._settings.broker_url)
        interval = self._settings.reap_interval_seconds
        while not self._stop_event.wait(interval):
            try:
                run_id = recover_once(
                    self._settings, self._app, publish_grace_seconds=interval, last_run_id=run_id
                )
            except Exception:  # the store or broker is down: try again next pass
                log.warning("recovery pass failed; retrying in %.0fs", interval, exc_info=True)

    def stop(self) -> None:
        self._stop_event.set()


def _recovery_process_main(parent_pid: int) -> None:
    """Entry point of the spawned recovery process: loop until the worker that started it is gone."""
    from xorjobs.queue import make_celery
    from xorjobs.settings import get_settings

    logging.basicConfig(level=logging.INFO, format="[%(asctime)s: %(levelname)s/recovery] %(message)s")
    settings = get_settings()
    loop = RecoveryLoop(settings, make_celery(settings))
    loop.start()
    while os.getppid() == parent_pid:
        loop.join(timeout=1.0)
    loop.stop()


def start_recovery_process() -> multiprocessing.process.BaseProcess:
    """Start the recovery loop in a fresh (spawned, not forked) process; it exits with its parent."""
    context = multiprocessing.get_context("spawn")
    process = context.Process(
        target=_recovery_process_main, args=(os.getpid(),), name="xorjobs-recovery", daemon=True
    )
    process.start()
    return process
