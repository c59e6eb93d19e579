"""The embedded mode: a Celery worker inside the ``xorjobs run`` process, on the same task code.

The embedded queue (kombu's filesystem transport) deletes a message as soon as it is received, so a
process that dies mid-job loses the message: recovery comes from the store. On start, ``resync``
re-publishes every queued job (duplicates are harmless: the claim is atomic), and the recovery loop
re-queues jobs whose lease expired.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from celery import Celery
from celery.worker import state as worker_state

from xorjobs.settings import Settings
from xorjobs.store.recovery import mark_queued_unpublished
from xorjobs.worker.recovery import BrokerCensus, RecoveryLoop, recover_once

log = logging.getLogger(__name__)
STOP_TIMEOUT_SECONDS = 10.0
"""How long a stop waits for the job in hand to notice it was released (its next progress write)."""


EMBEDDED_NODE_PREFIX = "embedded-"


def embedded_hostname() -> str:
    return f"{EMBEDDED_NODE_PREFIX}{os.getpid()}@{socket.gethostname()}"


def is_in_process(hostname: str | None) -> bool:
    """Whether a worker of this node name runs inside a ``run``/client process (``in_process_worker``)."""
    return bool(hostname and hostname.startswith(EMBEDDED_NODE_PREFIX))


def reset_embedded_queue(settings: Settings) -> None:
    """Empty the embedded queue and mark every queued job unpublished, so what is submitted or re-queued
    next is the first message in it; the in-process recovery loop publishes the older jobs after (its
    relay), and a job whose lease expired is re-queued by it too."""
    for message in Path(settings.queue_folder).glob("*.msg"):
        message.unlink(missing_ok=True)
    mark_queued_unpublished(settings.resolved_database_url)


def resync_embedded_queue(settings: Settings, app: Celery) -> None:
    """Make the embedded queue hold exactly one message per queued job of the store."""
    reset_embedded_queue(settings)
    recover_once(settings, app, BrokerCensus(settings), publish_grace_seconds=0)


@contextmanager
def in_process_worker(
    app: Celery, settings: Settings, queues: list[str], hostname: str
) -> Iterator[threading.Thread]:
    """Run a solo-pool Celery worker in a thread while the block runs; the block gets the thread.

    Its row in the fleet view (``xorjobs workers``) is beaten from a thread of this process (a solo pool
    forks nothing, so holding connections here is safe) and marked stopped when the block ends, however it
    ends (``xorjobs workers --all`` showed no row for it, and before that a ``lost`` one)."""
    from xorjobs.worker.celery_app import limit_torch_threads
    from xorjobs.worker.registration import RegistrationHeartbeat, record_stop, worker_identity

    limit_torch_threads()
    controller = app.WorkController(
        app=app,
        concurrency=1,
        pool="solo",
        queues=queues,
        hostname=hostname,
        loglevel="WARNING",
        ready_callback=None,
        without_heartbeat=True,
        without_mingle=True,
        without_gossip=True,
    )
    thread = threading.Thread(target=controller.start, name="xorjobs-embedded-worker", daemon=True)
    recovery = RecoveryLoop(settings, app)
    identity = worker_identity(settings, hostname, queues)
    registration = RegistrationHeartbeat(settings, identity)
    registration.start()
    thread.start()
    recovery.start()
    try:
        yield thread  # so a caller can wait for it to stop (xorjobs.worker.embedded_training)
    finally:
        recovery.stop()
        worker_state.should_terminate = 0  # type: ignore[assignment]  # celery types it as None only
        thread.join(timeout=STOP_TIMEOUT_SECONDS)
        registration.stop()
        registration.join(timeout=STOP_TIMEOUT_SECONDS)  # no beat after the stop is recorded
        record_stop(settings, identity)
        if thread.is_alive():
            # Still inside a torch op: exiting the interpreter under it aborts the process (C++
            # terminate), so leave at once; the store already holds everything that matters.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(130 if sys.exc_info()[0] is KeyboardInterrupt else 1)


_apps: dict[str, Celery] = {}


def app_for(settings: Settings) -> Celery:
    """The worker's Celery app for ``settings``, with the worker's tasks: one per settings in this process.

    The worker's module app (``worker.celery_app.app``) is built once per interpreter from the settings of
    that moment; a notebook's second ``Client`` on another store or ``XORJOBS_HOME`` would have consumed
    the first one's queue folder and trained into its store. Each settings gets its own app instead."""
    from xorjobs.queue import make_celery, settings_of
    from xorjobs.worker.celery_app import app as worker_app
    from xorjobs.worker.tasks import register_tasks

    if settings_of(worker_app) == settings:
        return worker_app
    key = settings.model_dump_json()
    if key not in _apps:
        app = make_celery(settings)
        app.conf.worker_proc_alive_timeout = worker_app.conf.worker_proc_alive_timeout
        app.conf.worker_consumer = worker_app.conf.worker_consumer
        register_tasks(app)
        _apps[key] = app
    return _apps[key]
