"""The worker's Celery app (``celery -A worker.celery_app``) and its process signals."""

from __future__ import annotations

import logging
import signal
import threading
from typing import Any

from celery.signals import worker_init, worker_process_init, worker_shutdown

from xorjobs.queue import get_celery, settings_of
from xorjobs.settings import Settings
from xorjobs.store.engine import dispose_engines
from xorjobs.worker.packing import check_all_variants
from xorjobs.worker.recovery import RecoverySupervisor
from xorjobs.worker.registration import mark_stopped_at_exit, worker_identity

log = logging.getLogger(__name__)
app = get_celery()
# A pool child must say it is up within this many seconds or billiard kills it (default 4 s); on a
# busy 2-core machine a fork plus first use of torch can take longer.
app.conf.worker_proc_alive_timeout = 60
# Closes a consumer connection whose start failed, and says when the broker is out of memory (issue 14 §5).
app.conf.worker_consumer = "xorjobs.worker.broker_consumer:BrokerConsumer"


def preload_torch() -> None:
    """Import torch in the main process, before the pool forks, so every child starts at once.

    Importing torch does not initialise CUDA (that happens on first use, inside the training child),
    so forking afterwards stays safe (pytorch#40403 is about *initialised* CUDA).
    """
    import torch  # noqa: F401

    # The first optimizer step imports torch._dynamo lazily, and some 800 modules with it: a second of a
    # pool child's first job, and a soft time limit landing inside that import left the module half
    # made, so every later job of that child failed with "partially initialized module 'torch._dynamo'".
    # One step of training here imports all of it once, before the fork (the packing self-checks train
    # here too).
    from xorjobs.models.train import train

    train("nn", 0, 1.0, 1, 1, "cpu")


def preload_torch_deferring_ctrl_c() -> None:
    """``preload_torch`` for ``xorjobs worker``, before Celery starts: a Ctrl-C meanwhile only sets a flag,
    and is raised as KeyboardInterrupt once torch is in. Raised inside the import, it could land in a
    garbage collector's callback, be printed and dropped, and leave numpy half-imported: the worker went on
    to "ready", deaf to that Ctrl-C, and its pool child failed ("cannot load module more than once")."""
    interrupted = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda *_: interrupted.set())
    try:
        preload_torch()
    finally:
        signal.signal(signal.SIGINT, previous)
    if interrupted.is_set():
        raise KeyboardInterrupt


_recovery: list[tuple[RecoverySupervisor, Settings]] = []


def limit_torch_threads() -> None:
    """One thread per training process: XOR ops are tiny, and 2 threads on 2 cores ran 3-12x slower
    (reliability notes §0.8). Results do not depend on it: the tensors are far too small to split."""
    import torch

    torch.set_num_threads(1)


@worker_process_init.connect
def _on_child_start(**_: Any) -> None:
    limit_torch_threads()
    # The main process reads the store too (worker.skip_finished): a child forked later must not use
    # the connection it inherited, only open its own.
    dispose_engines(close=False)


@worker_init.connect
def _on_worker_init(sender: Any = None, **_: Any) -> None:
    preload_torch()
    if settings_of(sender.app if sender is not None else app).pack_size > 1:
        check_all_variants()
    # Pool children are forked from this process: it must hold no database connection when they are
    # (a SQLite connection's lock state, or a Postgres socket, must never be shared across fork).
    dispose_engines()
    from xorjobs.worker.embedded import is_in_process

    if sender is not None and is_in_process(sender.hostname):
        # An in-process worker (xorjobs run, the Python client) has its recovery loop in a thread
        # (worker.embedded.in_process_worker). A spawned recovery process would import the caller's
        # __main__ again: a script without a main guard would submit its sweep a second time.
        return
    # Recovery starts here, not at worker_ready: "ready" waits for the consumer's connection, which a
    # broker at maxmemory refused for as long as it was full, and the jobs waited with it (issue 14 §5).
    # The recovery process is spawned (not forked) and this process keeps no connection of its own.
    # The fleet view's row (worker/registration.py) is beaten from the recovery process, not from here.
    # sender.app, not this module's app: an in-process client trains on an app of its own settings
    # (worker.embedded.app_for), and its recovery must use that store.
    worker_app = sender.app if sender is not None else app
    identity = worker_identity(settings_of(worker_app), sender.hostname, worker_app.amqp.queues.consume_from)
    supervisor = RecoverySupervisor(settings_of(worker_app), identity=identity)
    supervisor.start()
    _recovery.append((supervisor, settings_of(worker_app)))


@worker_shutdown.connect
def _on_worker_shutdown(**_: Any) -> None:
    stop_recovery()


def stop_recovery() -> None:
    """Stop every recovery process this process started and mark its registry row stopped (idempotent:
    also called by ``xorjobs worker`` when Ctrl-C comes before Celery would send worker_shutdown)."""
    while _recovery:  # emptied: an in-process client runs several workers, one after another, in one process
        supervisor, settings = _recovery.pop()
        supervisor.stop()
        if supervisor.identity is not None:
            mark_stopped_at_exit(settings, supervisor.identity, supervisor.process)


import xorjobs.worker.tasks  # noqa: E402,F401  (registers the task on the app)
