"""``xorjobs run``: submit and train a sweep in this process (embedded), or submit to the API and wait."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from xorjobs.cli import render
from xorjobs.cli.backends import HttpBackend
from xorjobs.cli.waiting import wait_for_sweep
from xorjobs.errors import NoCuda, Unreachable
from xorjobs.service import Service
from xorjobs.settings import Settings
from xorjobs.spec import SweepSpec

if TYPE_CHECKING:
    from celery import Celery

BROKER_PROBE_TIMEOUT_SECONDS = 5.0
"""How long ``run`` tries the broker before it gives up: the in-process worker would retry forever."""


def run_sweep(spec: SweepSpec, settings: Settings) -> dict[str, Any]:
    """Run the sweep to the end and return its results (same shape as ``results --json``)."""
    if settings.api_url:
        backend = HttpBackend(settings.api_url, settings.api_token)
        submitted = backend.submit(spec, None)
        for warning in submitted.get("warnings", []):
            render.stderr.print(f"warning: {warning}")
        wait_for_sweep(lambda: backend.status(submitted["sweep_id"]))
        return backend.results(submitted["sweep_id"])
    return _run_in_process(spec, settings)


def _run_in_process(spec: SweepSpec, settings: Settings) -> dict[str, Any]:
    import torch

    from xorjobs.worker.celery_app import app as celery_app
    from xorjobs.worker.embedded import (
        embedded_hostname,
        in_process_worker,
        release_claims,
        resync_embedded_queue,
    )

    if spec.device == "cuda" and not torch.cuda.is_available():
        raise NoCuda("--device: cuda was asked for, and this machine has no usable CUDA device")
    # The embedded default store is this user's own: created (or upgraded) here when it is not at head,
    # before the resync below reads it. A store named by XORJOBS_DATABASE_URL is only checked.
    service = Service(settings, creates_embedded_store=True).ready(submitting=True)
    service.celery = celery_app  # the worker's app: the task is registered on it
    if settings.embedded_queue:
        resync_embedded_queue(settings, celery_app)
    submitted = service.submit_without_worker_check(spec)
    if not settings.embedded_queue:
        _require_broker(celery_app, submitted["sweep_id"], len(submitted["jobs"]))
    with in_process_worker(celery_app, settings, [spec.queue], embedded_hostname()):
        try:
            wait_for_sweep(lambda: service.status(submitted["sweep_id"]), interval=0.25)
        except KeyboardInterrupt:
            released = release_claims(settings)
            render.stderr.print(
                f"interrupted: unfinished jobs stay queued ({released} were running); "
                "`xorjobs run` or `xorjobs worker` on this store picks them up"
            )
            raise
    return service.results(submitted["sweep_id"])


def _require_broker(app: Celery, sweep_id: str, jobs: int) -> None:
    """Fail at once when the broker cannot be reached: a Celery consumer would wait for it forever.

    After the submit, so the sweep is recorded: its jobs wait in the store's outbox, and the relay
    of any worker that reaches the broker publishes them."""
    from kombu.exceptions import OperationalError as KombuOperationalError

    with app.connection_for_write() as connection:
        try:
            connection.ensure_connection(
                max_retries=1, interval_start=0.2, timeout=BROKER_PROBE_TIMEOUT_SECONDS
            )
        except (KombuOperationalError, OSError) as error:
            reason = (str(error).strip().splitlines() or [type(error).__name__])[0].rstrip(".")
            raise Unreachable(
                f"cannot reach the broker {connection.as_uri()}: {reason}; sweep {sweep_id} ({jobs} job(s)) "
                "is recorded and stays queued: a worker publishes its jobs once it reaches the broker"
            ) from None
