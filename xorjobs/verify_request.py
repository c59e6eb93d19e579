"""``POST /jobs/{id}/verify`` without torch: store a request, send ``xorjobs.verify_job`` to the queue of the
re-run's device, and wait for the worker's report in the store (issue 12 §6).

Nothing but the store and the broker is shared, so the API and the worker may be on different hosts. A
request for a queue that no live worker serves (the store's registry) is a 503 at once; one nobody
answered in time is a 504 naming the queue (a worker of it trains first what it holds); a broker that
cannot be reached is a 503.
"""

from __future__ import annotations

import time
from typing import Any

from celery import Celery
from kombu.exceptions import KombuError

from xorjobs.defaults import VERIFY_TASK
from xorjobs.errors import InvalidSpec, NoAnswer, NotFound, NoWorker, Unreachable, XorjobsError
from xorjobs.spec import queue_for
from xorjobs.store import queries, verifications
from xorjobs.store.workers import serves_queue

API_JOB_ID = "path.job_id"
"""How the API's errors name the id (its path parameter, in FastAPI's ``loc`` style); the CLI says JOB_ID."""

POLL_SECONDS = 0.2
"""How often the waiting API reads the store for the worker's answer."""

_ERRORS_BY_STATUS: dict[int, type[XorjobsError]] = {404: NotFound, 503: Unreachable}


def check_verifiable(job: dict[str, Any], field: str = "JOB_ID") -> None:
    """Only a succeeded job has stored results to compare a re-run with. ``field`` names the id as the
    caller took it: the CLI's ``JOB_ID`` in process, the route's ``path.job_id`` in the API."""
    if job["state"] != "succeeded":
        raise InvalidSpec(
            field, f"job {job['id']} is {job['state']}: only a succeeded job has results to verify"
        )


def verify_on_worker(
    url: str, celery: Celery, job_id: str, device: str | None, timeout: float
) -> dict[str, Any]:
    """The report of a worker's solo re-run of ``job_id`` on ``device`` (default: the job's own)."""
    job = queries.job_detail(url, job_id)  # NotFound first, before anything is written or sent
    check_verifiable(job, API_JOB_ID)
    device = device or str(job["device"])
    queue = queue_for(device)
    # The registry (store.workers) is what the API and the workers share: with no live worker of the
    # queue, nothing would answer, so say so now rather than after the whole timeout. A worker that is
    # starting registers before it is ready, so it is not missed.
    if not serves_queue(url, queue):
        raise NoWorker(
            f"no live worker serves queue {queue!r} to verify {job_id} on {device} (`xorjobs workers` "
            f"lists them); start one with `xorjobs worker --queue {queue}`"
        )
    verification_id = verifications.request(url, job_id, device)
    try:
        celery.send_task(
            VERIFY_TASK,
            args=[verification_id],
            queue=queue,
            routing_key=queue,
            retry=True,
            retry_policy={"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5},
        )
    except (KombuError, OSError) as error:
        verifications.answer(
            url, verification_id, error="not sent: the broker could not be reached", status=503
        )
        raise Unreachable(f"cannot reach the broker to ask a worker to verify {job_id}: {error}") from None
    deadline = time.monotonic() + timeout
    while True:
        answer = verifications.answer_of(url, verification_id)
        if answer is not None:
            break
        if time.monotonic() >= deadline:
            # Answered as given up, so a worker that takes the message later skips the re-run.
            if verifications.answer(url, verification_id, error="no worker answered in time", status=504):
                raise NoAnswer(
                    f"no worker of queue {queue!r} answered within {timeout:g} s (they may all be busy "
                    f"training); ask again with a longer timeout (`xorjobs verify --timeout SECONDS`, "
                    f"?timeout= over HTTP) or start another worker (`xorjobs worker --queue {queue}`)"
                )
            continue  # a worker answered just now
        time.sleep(POLL_SECONDS)
    if answer.report is not None:
        return answer.report
    error_class = _ERRORS_BY_STATUS.get(answer.status or 0)
    if error_class is not None:
        raise error_class(answer.error or "")
    if answer.status == 422:
        field, _, message = (answer.error or "").partition(": ")
        raise InvalidSpec(field, message)
    raise XorjobsError(f"the worker could not verify {job_id}: {answer.error}")
