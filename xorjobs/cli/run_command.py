"""``xorjobs run`` and the embedded ``retry``: train a sweep in this process, or submit to an API and wait."""

from __future__ import annotations

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

    from xorjobs.worker.embedded_training import training_service

    if spec.device == "cuda" and not torch.cuda.is_available():
        raise NoCuda("--device: cuda was asked for, and this machine has no usable CUDA device")
    # The embedded default store is this user's own: created (or upgraded) here when it is not at head,
    # before the queue is reset below. A store named by XORJOBS_DATABASE_URL is only checked.
    service = training_service(settings)
    from xorjobs.worker.embedded import reset_embedded_queue  # after the store's check: it makes folders

    if settings.embedded_queue:
        reset_embedded_queue(settings)
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
    from xorjobs.worker.embedded_training import training_service

    service = training_service(settings, creates_store=False)  # no store: exit 3, none created
    from xorjobs.worker.embedded import reset_embedded_queue  # after the store's check: it makes folders

    reset_embedded_queue(settings)  # the re-queued jobs' messages come first, leftovers after
    retried = service.retry(sweep_id, failed_only)["retried"]
    status = service.status(sweep_id)
    if retried or status["counts"].get("queued", 0):
        render.stderr.print(
            f"re-queued {len(retried)} job(s) of sweep {sweep_id}; training them here", soft_wrap=True
        )
        queues = sorted({str(job["queue"]) for job in status["jobs"] if job["state"] == "queued"})
        _train_sweep(service, settings, sweep_id, queues)
    return set(retried), service.results(sweep_id)


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


def _train_sweep(service: Service, settings: Settings, sweep_id: str, queues: list[str]) -> None:
    """Train here until the sweep ends, under the CLI's progress bar (``worker.embedded_training``)."""
    from xorjobs.worker.embedded_training import train_sweep

    train_sweep(
        service, settings, sweep_id, queues, lambda status: wait_for_sweep(status, interval=0.25), _say
    )


def _say(text: str) -> None:
    render.stderr.print(text, soft_wrap=True)


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
