"""A task strategy that settles, in the consumer, messages the pool need never see.

A pack of K jobs leaves K-1 messages whose jobs it holds or already finished. Through the prefork pool
each of them costs a round trip (dispatch to a child, a read of the store, the result back, the ack), and
a job submitted right after a large sweep waits behind a few hundred of those per worker. Here the
consumer reads the job's state (one indexed SELECT) and settles the message at once when
- there is nothing to claim (``JobPeek.claimable``, the rule the task itself applies): the job is
  finished, or running under a live lease of a holder not known dead: acked;
- the job is not in the store and the message comes from this store: its sweep was deleted, acked
  with one log line for the whole burst (``worker.store_match``);
- the message comes from another store, and no message of this worker's own store came before it:
  handed back untouched (rejected onto the queue), and this worker stops consuming its queues,
  saying so once: a worker on the wrong database must not eat the right workers' queue. (A worker
  that has run its own store's jobs drops a stray message of another store with one line: that
  store's recovery census re-publishes it.)
Every other message, and any message this cannot read (the store is down), takes the normal path,
where ``run_job`` decides (and retries the store).
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery, Task
from celery.worker.strategy import default as default_strategy

from xorjobs.queue import STORE_KWARG, settings_of
from xorjobs.settings import get_settings
from xorjobs.store.peeks import JobPeek, peek_job
from xorjobs.worker.liveness import holder_is_dead
from xorjobs.worker.store_match import DELETED, STRAYS, is_foreign, wrong_store_text

log = logging.getLogger(__name__)


def job_id_of(message: Any) -> str | None:
    """The job id a train message carries (its only argument), or None for anything unexpected."""
    try:
        payload = message.payload
        args = payload[0] if isinstance(payload, list | tuple) else payload.get("args")
    except Exception:  # a body that does not even decode: the normal path reports it
        return None
    return args[0] if isinstance(args, list | tuple) and args and isinstance(args[0], str) else None


def store_of(message: Any) -> str | None:
    """The publishing store's fingerprint a train message carries, or None (older messages)."""
    try:
        payload = message.payload
        kwargs = payload[1] if isinstance(payload, list | tuple) else payload.get("kwargs")
    except Exception:
        return None
    store = kwargs.get(STORE_KWARG) if isinstance(kwargs, dict) else None
    return store if isinstance(store, str) else None


def _peek(url: str, job_id: str) -> JobPeek | bool | None:
    """The job's peek, None when the store has no such job, False when the store cannot be read."""
    try:
        return peek_job(url, job_id)
    except Exception as error:  # the store is down: let the task path deal with it (and retry)
        log.debug("cannot read job %s in the consumer (%s); dispatching it", job_id, error)
        return False


def has_nothing_to_claim(job_id: str, url: str | None = None) -> bool:
    """Whether the consumer settles the job's message itself for having nothing to claim (False when
    the job is unknown or unreadable: the pool decides then)."""
    return _nothing_to_claim(_peek(url or get_settings().resolved_database_url, job_id))


def _nothing_to_claim(peek: JobPeek | bool | None) -> bool:
    # ``runner.run_job``'s own rule: finished, or held by a live attempt (a pack's member; if that
    # attempt dies, recovery re-queues and re-publishes the job).
    return isinstance(peek, JobPeek) and not peek.claimable(holder_is_dead)


def skip_finished(task: Task, app: Celery, consumer: Any, **kwargs: Any) -> Any:  # type: ignore[type-arg]
    """Celery's default strategy, with finished, deleted and foreign jobs' messages settled before it."""
    handle = default_strategy(task, app, consumer, **kwargs)
    connection_errors = consumer.connection_errors
    url = settings_of(app).resolved_database_url
    refused: list[str] = []
    own_seen: list[bool] = []

    def refuse(store: str | None) -> None:
        if refused:
            return
        refused.append(store or "")
        log.error("refusing to consume: %s", wrong_store_text(url, store))
        for queue in [queue.name for queue in consumer.task_consumer.queues]:
            consumer.cancel_task_queue(queue)

    def task_message_handler(
        message: Any, body: Any, ack: Any, reject: Any, callbacks: Any, **options: Any
    ) -> Any:
        job_id = job_id_of(message)
        if job_id is None:
            return handle(message, body, ack, reject, callbacks, **options)
        store = store_of(message)
        if refused:
            reject(log, connection_errors, requeue=True)
            return None
        if is_foreign(url, store):
            if not own_seen:  # every message so far names another store: this worker is misplaced
                reject(log, connection_errors, requeue=True)
                refuse(store)
                return None
            # This worker has run its own store's jobs: a stray message of another store (its
            # store's recovery census re-publishes the job once it sees no message for it).
            STRAYS.dropped(job_id)
            ack(log, connection_errors)
            return None
        if store is not None and not own_seen:
            own_seen.append(True)
        peek = _peek(url, job_id)
        if _nothing_to_claim(peek):  # settled here: no round trip through a busy pool child
            assert isinstance(peek, JobPeek)
            log.debug("job %s: nothing to claim (%s); message acknowledged here", job_id, peek.state)
            ack(log, connection_errors)
            return None
        if peek is None:
            DELETED.dropped(job_id)
            ack(log, connection_errors)
            return None
        return handle(message, body, ack, reject, callbacks, **options)

    return task_message_handler
