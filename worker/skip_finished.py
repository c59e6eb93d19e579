"""A task strategy that acknowledges messages of finished jobs in the consumer, never in the pool.

A pack of K jobs leaves K-1 messages whose jobs it already finished. Through the prefork pool each of
them costs a round trip (dispatch to a child, a read of the store, the result back, the ack), and a job
submitted right after a large sweep waits behind a few hundred of those per worker. Here the consumer
reads the job's state (one indexed SELECT) and acks a finished job's message at once; every other
message, and any message this cannot read, takes the normal path, where ``run_job`` decides.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery, Task
from celery.worker.strategy import default as default_strategy

from xorjobs.settings import get_settings
from xorjobs.store.peeks import peek_job
from xorjobs.store.tables import TERMINAL_STATES

log = logging.getLogger(__name__)


def job_id_of(message: Any) -> str | None:
    """The job id a train message carries (its only argument), or None for anything unexpected."""
    try:
        payload = message.payload
        args = payload[0] if isinstance(payload, list | tuple) else payload.get("args")
    except Exception:  # a body that does not even decode: the normal path reports it
        return None
    return args[0] if isinstance(args, list | tuple) and args and isinstance(args[0], str) else None


def is_finished(job_id: str) -> bool:
    try:
        peek = peek_job(get_settings().resolved_database_url, job_id)
    except Exception as error:  # the store is down: let the task path deal with it (and retry)
        log.debug("cannot read job %s in the consumer (%s); dispatching it", job_id, error)
        return False
    return peek is not None and peek.state in TERMINAL_STATES


def skip_finished(task: Task, app: Celery, consumer: Any, **kwargs: Any) -> Any:  # type: ignore[type-arg]
    """Celery's default strategy, with finished jobs' messages acknowledged before it."""
    handle = default_strategy(task, app, consumer, **kwargs)
    connection_errors = consumer.connection_errors

    def task_message_handler(
        message: Any, body: Any, ack: Any, reject: Any, callbacks: Any, **options: Any
    ) -> Any:
        job_id = job_id_of(message)
        if job_id is not None and is_finished(job_id):
            log.debug("job %s is finished: message acknowledged without running the task", job_id)
            ack(log, connection_errors)
            return None
        return handle(message, body, ack, reject, callbacks, **options)

    return task_message_handler
