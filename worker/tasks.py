"""The Celery task. Thin on purpose: it hands the job id to the runner, and turns a store the worker
cannot use into a message handed back to the queue (never an ack of a job the store knows nothing of)."""

from __future__ import annotations

import logging
import socket

from celery import Celery, Task
from celery.exceptions import Reject

from xorjobs.defaults import VERIFY_TASK
from xorjobs.queue import TRAIN_TASK, settings_of
from xorjobs.worker.celery_app import app
from xorjobs.worker.liveness import holder_name
from xorjobs.worker.runner import run_job
from xorjobs.worker.store_match import WrongStore
from xorjobs.worker.store_outage import StoreOutage

log = logging.getLogger(__name__)


def _train_job(self: Task, job_id: str, store: str | None = None) -> str:  # type: ignore[type-arg]
    """Train the job ``job_id`` (``store``: the fingerprint of the store that published it)."""
    # Node name plus pid: several training processes (prefork children) share one node name.
    worker_name = holder_name(self.request.hostname or socket.gethostname())
    try:
        return run_job(job_id, worker_name, settings_of(self.app), store).value
    except (StoreOutage, WrongStore) as error:
        # Back onto the queue, not acked: the store did not record what happened to this job (or this
        # is not its store). Reject rather than raise: with acks_late a raised error is still acked.
        log.warning("job %s: message handed back to the queue: %s", job_id, error)
        raise Reject(str(error), requeue=True) from error


def _verify_job(self: Task, verification_id: str) -> None:  # type: ignore[type-arg]
    """Re-run a stored job solo for ``POST /jobs/{id}/verify`` and store the report (issue 12 §6)."""
    from xorjobs.worker.verify import run_verification

    run_verification(settings_of(self.app), verification_id)


def register_tasks(celery: Celery) -> None:
    """Register the worker's tasks on ``celery``: the worker's own app below, and the app an in-process
    client builds for its own settings (``worker.embedded.app_for``: one app per store and queue folder)."""
    # Strategy: messages of finished or deleted jobs are acked in the consumer, and another store's
    # messages handed back there (worker.skip_finished).
    celery.task(name=TRAIN_TASK, bind=True, Strategy="xorjobs.worker.skip_finished:skip_finished")(_train_job)
    # Not acked late: a lost verify message is answered by the API's timeout, never retried behind its back.
    celery.task(name=VERIFY_TASK, bind=True, acks_late=False)(_verify_job)


register_tasks(app)
train_job = app.tasks[TRAIN_TASK]
