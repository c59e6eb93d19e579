"""The one submit path, shared by the API and the CLI's in-process mode: store first, then publish."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from celery import Celery

from xorjobs.errors import Unreachable
from xorjobs.queue import publish
from xorjobs.spec import SweepSpec
from xorjobs.store.retry import is_transient_store_error
from xorjobs.store.sweeps import CreatedSweep, create_sweep, mark_published

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Submission:
    sweep: CreatedSweep
    unpublished: int
    """Jobs the broker did not take now; they stay queued and the workers' reconciler publishes them."""


def submit_sweep(url: str, app: Celery, spec: SweepSpec, idempotency_key: str | None = None) -> Submission:
    """Commit the sweep and its jobs, then publish one message per job.

    The commit comes first, so a message never names a job the store does not have, and a failed
    publish loses nothing: the job waits, visibly unpublished, until a worker's reconciler sends it.
    The store must already be at head (``Service`` checks it; this never migrates).
    """
    sweep = create_sweep(url, spec, idempotency_key)
    if not sweep.created:
        return Submission(sweep, unpublished=0)
    try:
        published = publish(app, sweep.jobs)
    except Unreachable:
        published = []
    try:
        mark_published(url, published)
    except Exception as error:
        if not is_transient_store_error(error):
            raise
        # Committed and on the queue: the submit succeeded. Only the outbox mark is missing, so a
        # worker's relay may publish these again; a duplicate message finds nothing to claim.
        log.warning("sweep %s: published, but not yet marked so in the store: %s", sweep.sweep_id, error)
    return Submission(sweep, unpublished=len(sweep.jobs) - len(published))
