"""A worker in the fleet view: its row in the store (``xorjobs.store.workers``), written at start, renewed
by a heartbeat, marked stopped at a clean shutdown.

Where the heartbeat runs: in the worker's recovery process (``worker/recovery.py``), a spawned process
that may hold database connections, not in the main process, which forks pool children at any time and
must hold none when it does (``worker/celery_app.py``). The recovery process exits when the main process
does, so the beats stop with the worker and its row turns lost; while the supervisor restarts a
recovery process that died, the row may show lost for that pause (the log says so too). The identity
is made once in the main process, so a restarted recovery process beats on the same row. An in-process
worker (``xorjobs run``, the Python client's embedded ``wait()``) forks nothing and has no recovery
process: it beats from a thread and records its stop when it ends (``worker.embedded.in_process_worker``).
"""

from __future__ import annotations

import logging
import multiprocessing.process
import os
import socket
import threading
import uuid
from collections.abc import Iterable

import xorjobs
from xorjobs.defaults import VARIANTS
from xorjobs.settings import Settings
from xorjobs.store.engine import dispose_engines
from xorjobs.store.workers import WorkerIdentity, beat, mark_stopped, prune_workers, register_worker
from xorjobs.worker.liveness import liveness_scope
from xorjobs.worker.packing import engine_for

log = logging.getLogger(__name__)
GPU_QUEUE = "gpu"


def engines_by_variant(settings: Settings, queues: Iterable[str]) -> dict[str, str]:
    """What each variant trains on in this worker, as ``worker.packing`` chooses it: the first pack
    engine whose self-check passed in this process where packing is on (on the CPU), solo otherwise.

    A gpu worker exists only where CUDA does (``xorjobs worker -Q gpu`` checks in a subprocess); CUDA is
    not touched here, in a process that forks.
    """
    from xorjobs.models.engines import SOLO, packing_engines

    device = "cuda" if GPU_QUEUE in queues else "cpu"
    if settings.pack_size <= 1:
        return dict.fromkeys(VARIANTS, SOLO.name)
    if device == "cuda":
        return dict.fromkeys(VARIANTS, packing_engines(device)[0].name)
    return {variant: engine_for(variant, device, settings.pack_size).name for variant in VARIANTS}


def worker_identity(settings: Settings, node: str, queues: Iterable[str]) -> WorkerIdentity:
    """This worker start's identity: a fresh uuid4, so no restart and no other host can share it."""
    served = tuple(sorted(set(queues)))
    return WorkerIdentity(
        instance_id=uuid.uuid4().hex,
        node=node,
        host=socket.gethostname(),
        pid=os.getpid(),
        scope=liveness_scope(),
        queues=served,
        engines=engines_by_variant(settings, served),
        version=xorjobs.__version__,
        heartbeat_seconds=settings.heartbeat_seconds,
    )


class RegistrationHeartbeat(threading.Thread):
    """Registers the worker, then renews its ``last_heartbeat`` every ``heartbeat_seconds`` (start to
    start); a store outage is one warning, and the beats go on when it is back."""

    def __init__(self, settings: Settings, identity: WorkerIdentity) -> None:
        super().__init__(name="xorjobs-registration", daemon=True)
        self._url = settings.resolved_database_url
        self._identity = identity
        self._stop_event = threading.Event()

    def run(self) -> None:
        interval = self._identity.heartbeat_seconds
        registered, failing = False, False
        while True:
            try:
                if not registered:
                    register_worker(self._url, self._identity)
                    registered = True
                    pruned = prune_workers(self._url)
                    if pruned:
                        log.info("registration: pruned %d worker rows not heard of for a week", pruned)
                else:
                    registered = beat(self._url, self._identity.instance_id)
            except Exception as error:  # the store is away: keep trying at the same cadence
                if not failing:
                    log.warning("registration heartbeat failed (%s); retrying", str(error).splitlines()[0])
                failing = True
            else:
                failing = False
            if self._stop_event.wait(interval):
                return

    def stop(self) -> None:
        self._stop_event.set()


def mark_stopped_at_exit(
    settings: Settings, identity: WorkerIdentity, recovery: multiprocessing.process.BaseProcess | None
) -> None:
    """At a clean shutdown (the pool is gone by then: Celery sends worker_shutdown after stopping it):
    wait for the recovery process to end, so no last beat follows, then mark the row stopped."""
    if recovery is not None:
        recovery.join(timeout=5)
    try:
        record_stop(settings, identity)
    finally:
        dispose_engines()


def record_stop(settings: Settings, identity: WorkerIdentity) -> None:
    """Mark the worker's row stopped (after its last beat); a store that is away is one warning."""
    try:
        mark_stopped(settings.resolved_database_url, identity.instance_id)
    except Exception as error:  # the store is away: the row turns lost instead, which is still true
        log.warning("could not mark worker %s stopped: %s", identity.node, str(error).splitlines()[0])
