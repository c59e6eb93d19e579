"""The client's embedded mode: train a sweep in this process, as ``xorjobs run`` does (no servers).

Used when the settings have neither an API (``XORJOBS_API_URL``) nor a broker (``XORJOBS_BROKER_URL``):
nothing else would consume the embedded queue. Imported only then: it needs the store, Celery and torch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from xorjobs.settings import Settings

Status = dict[str, Any]


def train_sweep_here(
    settings: Settings, sweep_id: str, wait: Callable[[Callable[[], Status]], object]
) -> None:
    """Train the sweep's queued jobs with a worker inside this process until every job is finished.

    Its own jobs' messages go first (the embedded queue is emptied and refilled with them; older
    sweeps' queued jobs follow through the in-process recovery loop's relay, as in ``xorjobs run``).
    Each call builds a fresh in-process worker on the Celery app of these settings, so a notebook can
    submit and wait again and again in one kernel."""
    from xorjobs.cli.run_command import _reset_embedded_queue, _train_sweep, _training_service
    from xorjobs.queue import publish
    from xorjobs.store.sweeps import QueuedJob, mark_published

    service = _training_service(settings, creates_store=False)
    status = service.status(sweep_id)
    queued = [
        QueuedJob(str(job["id"]), str(job["queue"])) for job in status["jobs"] if job["state"] == "queued"
    ]
    running = [job for job in status["jobs"] if job["state"] == "running"]
    if not queued and not running:
        return
    _reset_embedded_queue(settings)
    mark_published(settings.resolved_database_url, publish(service.celery, queued))
    queues = sorted({str(job["queue"]) for job in status["jobs"] if job["state"] in ("queued", "running")})
    _train_sweep(service, settings, sweep_id, queues, wait)
