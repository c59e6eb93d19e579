"""``xorjobs run`` and the embedded ``retry``: train a sweep in this process, or submit to an API and wait."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from xorjobs.cli import render
from xorjobs.cli.waiting import wait_for_sweep, wait_or_leave_running
from xorjobs.client.http import HttpBackend
from xorjobs.errors import NoCuda, Unreachable
from xorjobs.service import Service
from xorjobs.settings import Settings
from xorjobs.spec import SweepSpec

if TYPE_CHECKING:
    from celery import Celery

BROKER_PROBE_TIMEOUT_SECONDS = 5
"""How long ``run`` tries the broker before it gives up: the in-process worker would retry forever."""


def run_sweep(spec: SweepSpec, settings: Settings) -> dict[str, Any]:
    """Run the sweep to the end and return its results (same shape as ``results --json``)."""
    if settings.api_url:
        backend = HttpBackend(settings.api_url, settings.api_token)
        submitted = backend.submit(spec, None)
        for warning in submitted.get("warnings", []):
            render.stderr.print(f"warning: {warning}")
        wait_or_leave_running(lambda: backend.status(submitted["sweep_id"]), str(submitted["sweep_id"]))
        return backend.results(submitted["sweep_id"])
    return _run_in_process(spec, settings)


def _run_in_process(spec: SweepSpec, settings: Settings) -> dict[str, Any]:
    import torch

    if spec.device == "cuda" and not torch.cuda.is_available():
        raise NoCuda("--device: cuda was asked for, and this machine has no usable CUDA device")
    # The embedded default store is this user's own: created (or upgraded) here when it is not at head,
    # before the queue is reset below. A store named by XORJOBS_DATABASE_URL is only checked.
    service = _training_service(settings)
    if settings.embedded_queue:
        _reset_embedded_queue(settings)
    submitted = service.submit_without_worker_check(spec)  # its messages: the first in the queue
    sweep_id = submitted["sweep_id"]
    if not settings.embedded_queue:
        _require_broker(service.celery, sweep_id, len(submitted["jobs"]))
    else:
        _say_what_comes_first(settings, sweep_id, len(submitted["jobs"]))
    _train_sweep(service, settings, sweep_id, [spec.queue])
    return service.results(sweep_id)


def retry_in_process(sweep_id: str, failed_only: bool, settings: Settings) -> tuple[set[str], dict[str, Any]]:
    """``retry`` in the embedded mode: re-queue, then train the sweep's unfinished jobs here, as ``run``
    does (nothing else would: no worker listens on the embedded queue). Returns (re-queued ids, results)."""
    service = _training_service(settings, creates_store=False)  # no store: exit 3, none created
    _reset_embedded_queue(settings)  # the re-queued jobs' messages come first, leftovers after
    retried = service.retry(sweep_id, failed_only)["retried"]
    status = service.status(sweep_id)
    if retried or status["counts"].get("queued", 0):
        render.stderr.print(
            f"re-queued {len(retried)} job(s) of sweep {sweep_id}; training them here", soft_wrap=True
        )
        queues = sorted({str(job["queue"]) for job in status["jobs"] if job["state"] == "queued"})
        _train_sweep(service, settings, sweep_id, queues)
    return set(retried), service.results(sweep_id)


def _training_service(settings: Settings, *, creates_store: bool = True) -> Service:
    service = Service(settings, creates_embedded_store=creates_store).ready(submitting=creates_store)
    # After the store's check: importing the worker's app makes the embedded queue's folders.
    from xorjobs.worker.embedded import app_for

    service.celery = app_for(settings)  # a worker's app for these settings: the task is registered on it
    return service


def _reset_embedded_queue(settings: Settings) -> None:
    """Empty the embedded queue and mark every queued job unpublished, so what is submitted or re-queued
    next is the first message in it; the in-process recovery loop publishes the older jobs after (its
    relay), and a job whose lease expired is re-queued by it too."""
    from xorjobs.store.recovery import mark_queued_unpublished

    for message in Path(settings.queue_folder).glob("*.msg"):
        message.unlink(missing_ok=True)
    mark_queued_unpublished(settings.resolved_database_url)


def _say_what_comes_first(settings: Settings, sweep_id: str, jobs: int) -> None:
    older = queued_elsewhere(settings.resolved_database_url, sweep_id)
    if older:
        render.stderr.print(
            f"training sweep {sweep_id} ({jobs} job(s)) first; {older} queued job(s) of older sweeps "
            "follow while it runs, and stay queued when it ends (`xorjobs retry SWEEP_ID` or "
            "`xorjobs worker` trains them)",
            soft_wrap=True,
        )


def queued_elsewhere(url: str, sweep_id: str) -> int:
    """Queued jobs of the store's other sweeps."""
    from sqlalchemy import func, select

    from xorjobs.store.engine import read_session
    from xorjobs.store.tables import Job, JobState

    with read_session(url) as session:
        count = session.scalar(
            select(func.count()).where(Job.state == JobState.QUEUED, Job.sweep_id != sweep_id)
        )
    return int(count or 0)


def _train_sweep(
    service: Service,
    settings: Settings,
    sweep_id: str,
    queues: list[str],
    wait: Callable[[Callable[[], dict[str, Any]]], object] = lambda status: wait_for_sweep(
        status, interval=0.25
    ),
) -> None:
    """Train with a worker inside this process until every job of the sweep is finished (``wait`` polls
    the status it is given until then: the CLI's progress bar, or the Python client's).

    However it ends (done, Ctrl-C), the worker first stops taking messages, then what it still holds
    is handed back to the queue: nothing is left ``running`` behind this process."""
    from celery.worker import state as worker_state

    from xorjobs.worker.embedded import embedded_hostname, in_process_worker

    worker_state.should_terminate = None  # a previous stop in this process must not stop this worker
    with (
        _ctrl_c_noted() as interrupted,
        in_process_worker(service.celery, settings, queues, embedded_hostname()) as worker,
    ):

        def status() -> dict[str, Any]:
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
            render.stderr.print(
                f"interrupted: {handed_back} running job(s) handed back to the queue; sweep {sweep_id}: "
                f"{left}{later if counts.get('queued') else ''}",
                soft_wrap=True,
            )
            raise
        handed_back = _stop_training(settings, worker)
        if handed_back:
            render.stderr.print(
                f"{handed_back} job(s) of other sweeps handed back to the queue", soft_wrap=True
            )


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
    deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
    while worker.is_alive() and time.monotonic() < deadline:
        release()
        worker.join(timeout=0.1)
    release()
    return len(handed_back)


def _require_broker(app: Celery, sweep_id: str, jobs: int) -> None:
    """Fail at once when the broker cannot be reached: a Celery consumer would wait for it forever.

    After the submit, so the sweep is recorded: its jobs wait in the store's outbox, and the relay
    of any worker that reaches the broker publishes them."""
    from kombu.exceptions import OperationalError as KombuOperationalError

    with app.connection_for_write() as connection:
        try:
            connection.ensure_connection(
                max_retries=1, interval_start=0, timeout=BROKER_PROBE_TIMEOUT_SECONDS
            )
        except (KombuOperationalError, OSError) as error:
            reason = (str(error).strip().splitlines() or [type(error).__name__])[0].rstrip(".")
            raise Unreachable(
                f"cannot reach the broker {connection.as_uri()}: {reason}; sweep {sweep_id} ({jobs} job(s)) "
                "is recorded and stays queued: a worker publishes its jobs once it reaches the broker"
            ) from None
