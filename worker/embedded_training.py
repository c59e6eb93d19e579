"""Training one sweep inside this process until it ends: what ``xorjobs run``, the embedded ``xorjobs
retry`` and the Python client's embedded ``wait()`` share.

The CLI and the client each bring their own view: ``wait`` polls the status it is given until the sweep
is finished (the CLI's progress bar, or the client's), and ``say`` tells the user what was handed back.
Importing this module imports no other worker module and no torch: they load inside the functions, after
the store's check (importing the worker's app makes the embedded queue's folders, and an embedded
``retry`` on a missing store must create nothing).
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

from xorjobs.service import Service
from xorjobs.settings import Settings

Status = dict[str, Any]
Wait = Callable[[Callable[[], Status]], object]
"""Polls the status function it is given until every job of the sweep is finished."""
Say = Callable[[str], None]


def say_on_stderr(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def training_service(settings: Settings, *, creates_store: bool = True) -> Service:
    """The service of these settings, checked (``creates_store``: the embedded default store is created
    or upgraded when it is not at head; otherwise a missing store is NoStore and nothing is created), on
    the worker's Celery app of these settings, so the in-process worker has its task registered."""
    service = Service(settings, creates_embedded_store=creates_store).ready(submitting=creates_store)
    # After the store's check: importing the worker's app makes the embedded queue's folders.
    from xorjobs.worker.embedded import app_for

    service.celery = app_for(settings)
    return service


def train_queued_jobs(settings: Settings, sweep_id: str, wait: Wait, say: Say = say_on_stderr) -> None:
    """Train the sweep's queued (and running) jobs here until every job of it is finished (the Python
    client's embedded ``wait()``); nothing to do when none is left.

    Its own jobs' messages go first (the embedded queue is emptied and refilled with them; older sweeps'
    queued jobs follow through the in-process recovery loop's relay, as in ``xorjobs run``). Each call
    builds a fresh in-process worker on the Celery app of these settings, so a notebook can submit and
    wait again and again in one kernel."""
    from xorjobs.queue import publish
    from xorjobs.store.sweeps import QueuedJob, mark_published
    from xorjobs.worker.embedded import reset_embedded_queue

    service = training_service(settings, creates_store=False)
    status = service.status(sweep_id)
    queued = [
        QueuedJob(str(job["id"]), str(job["queue"])) for job in status["jobs"] if job["state"] == "queued"
    ]
    if not queued and not any(job["state"] == "running" for job in status["jobs"]):
        return
    reset_embedded_queue(settings)
    mark_published(settings.resolved_database_url, publish(service.celery, queued))
    queues = sorted({str(job["queue"]) for job in status["jobs"] if job["state"] in ("queued", "running")})
    train_sweep(service, settings, sweep_id, queues, wait, say)


def train_sweep(
    service: Service,
    settings: Settings,
    sweep_id: str,
    queues: list[str],
    wait: Wait,
    say: Say = say_on_stderr,
) -> None:
    """Train with a worker inside this process until every job of the sweep is finished (``wait``
    returns).

    However it ends (done, Ctrl-C), the worker first stops taking messages, then what it still holds
    is handed back to the queue: nothing is left ``running`` behind this process."""
    from celery.worker import state as worker_state

    from xorjobs.worker.embedded import embedded_hostname, in_process_worker

    worker_state.should_terminate = None  # a previous stop in this process must not stop this worker
    with (
        _ctrl_c_noted() as interrupted,
        in_process_worker(service.celery, settings, queues, embedded_hostname()) as worker,
    ):

        def status() -> Status:
            if interrupted.is_set():
                raise KeyboardInterrupt
            return service.status(sweep_id)

        try:
            wait(status)
        except KeyboardInterrupt:
            handed_back = _stop_training(settings, worker)
            counts = service.status(sweep_id)["counts"]
            left = ", ".join(f"{count} {state}" for state, count in counts.items() if count)
            later = "; `xorjobs run` or `xorjobs worker` on this store picks them up"
            say(
                f"interrupted: {handed_back} running job(s) handed back to the queue; sweep {sweep_id}: "
                f"{left}{later if counts.get('queued') else ''}"
            )
            raise
        handed_back = _stop_training(settings, worker)
        if handed_back:
            say(f"{handed_back} job(s) of other sweeps handed back to the queue")


@contextmanager
def _ctrl_c_noted() -> Iterator[threading.Event]:
    """Ctrl-C sets an event that the wait checks, instead of raising wherever the main thread is: a
    KeyboardInterrupt raised inside a garbage collector's callback is printed and dropped ("Exception
    ignored in ... WeakKeyDictionary"), and the run went on to the end (seen on a 5,000-job run).
    A second Ctrl-C raises at once, as usual."""
    interrupted = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield interrupted  # only the main thread may set a signal handler (a client used from a thread)
        return

    def on_sigint(signum: int, frame: FrameType | None) -> None:
        if interrupted.is_set():
            raise KeyboardInterrupt
        interrupted.set()

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield interrupted
    finally:
        signal.signal(signal.SIGINT, previous)


def _stop_training(settings: Settings, worker: threading.Thread) -> int:
    """Stop the in-process worker and hand back the jobs it holds, until it has stopped; returns how many.

    The worker is told to stop first: released first, its jobs were claimed again with the next message
    (and a pack that outlived the stop's wait was left ``running``). A message it had already taken still
    claims a pack after that; the next round releases it, and training drops out at its next fenced write.
    """
    from celery.worker import state as worker_state

    from xorjobs.store.results import release_job
    from xorjobs.worker.embedded import STOP_TIMEOUT_SECONDS
    from xorjobs.worker.runner import ACTIVE_CLAIMS

    url = settings.resolved_database_url
    handed_back: set[str] = set()  # a job released, claimed again by a late message and released counts once

    def release() -> None:
        for job_id, attempt in list(ACTIVE_CLAIMS):
            if release_job(url, job_id, attempt):  # fenced on the attempt: its training stops
                handed_back.add(job_id)

    worker_state.should_terminate = 0  # type: ignore[assignment]  # celery types it as None only
    with _fencing_warnings_quiet():
        deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
        while worker.is_alive() and time.monotonic() < deadline:
            release()
            worker.join(timeout=0.1)
        release()
    return len(handed_back)


@contextmanager
def _fencing_warnings_quiet() -> Iterator[None]:
    """While this stop hands the jobs back, the pack it fenced off says so as a worker would ("N were
    fenced off", "attempt 1 stopped: ... no longer owns the job(s)"): here that is the stop itself, which
    the caller reports in one line, so the worker's warnings are held back; errors still show."""
    worker_log = logging.getLogger("xorjobs.worker")
    level = worker_log.level
    worker_log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        worker_log.setLevel(level)
