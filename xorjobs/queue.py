"""The Celery app, its settings, and publishing jobs by task name (so the API never imports torch).

Settings follow reliability notes §1.5; each says why. The database is the source of truth and the
broker only a doorbell: a message carries nothing but a job id.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Sequence
from functools import lru_cache
from typing import cast

from celery import Celery
from celery.utils.nodenames import anon_nodename
from kombu import Producer, Queue
from kombu.exceptions import KombuError
from kombu.utils.uuid import uuid

from xorjobs.errors import Unreachable
from xorjobs.settings import Settings, get_settings
from xorjobs.store.identity import store_fingerprint
from xorjobs.store.sweeps import QueuedJob

TRAIN_TASK = "xorjobs.train_job"
QUEUES = ("cpu", "gpu")
STORE_KWARG = "store"
"""The train message's one keyword argument: the fingerprint of the store that published the job
(``xorjobs.store.identity``), so a worker on another store hands the message back instead of eating it."""

_settings_of_app: weakref.WeakKeyDictionary[Celery, Settings] = weakref.WeakKeyDictionary()


def broker_url(settings: Settings) -> str:
    return settings.broker_url or "filesystem://"


def make_celery(settings: Settings) -> Celery:
    """Build the app for these settings (the embedded queue when no broker URL is set)."""
    app = Celery("xorjobs", broker=broker_url(settings), set_as_current=False)
    _settings_of_app[app] = settings
    # Far above the longest job: jobs are recovered by database leases, not by redelivery after this.
    visibility_timeout = max(settings.visibility_timeout_seconds, 2 * settings.job_time_limit_seconds)
    transport_options: dict[str, object] = {
        "visibility_timeout": visibility_timeout,
        "health_check_interval": 10,
    }
    if settings.embedded_queue:
        folder = settings.queue_folder
        (folder / "processed").mkdir(parents=True, exist_ok=True)
        transport_options = {
            "data_folder_in": str(folder),
            "data_folder_out": str(folder),
            "control_folder": str(folder / "control"),
            "processed_folder": str(folder / "processed"),
            "store_processed": False,
        }
        (folder / "control").mkdir(parents=True, exist_ok=True)
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],  # a pickle message is refused, never unpickled
        result_accept_content=["json"],
        task_acks_late=True,  # a message is acked after the job, so a lost worker's job is redelivered
        task_reject_on_worker_lost=True,  # a killed child requeues at once; the DB attempt cap stops loops
        worker_prefetch_multiplier=1,  # long jobs: reserve one at a time
        task_ignore_result=True,  # state lives in our tables
        task_track_started=False,
        # Keep running jobs when the broker connection blips; the ack is a Redis HDEL that works after a
        # reconnect (notes §1.4). Explicit because Celery 6 flips the default.
        worker_cancel_long_running_tasks_on_connection_loss=False,
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,
        broker_transport_options=transport_options,
        task_time_limit=settings.job_time_limit_seconds,
        task_soft_time_limit=max(1, settings.job_time_limit_seconds - 15),
        task_default_queue="cpu",
        task_create_missing_queues=True,
        worker_hijack_root_logger=False,
        worker_send_task_events=True,
        task_send_sent_event=False,
        broker_channel_error_retry=True,
    )
    return app


def settings_of(app: Celery) -> Settings:
    """The settings ``app`` was made with: what its tasks, its consumer and its recovery process use.

    Passed along explicitly (a worker's recovery process gets them as an argument), so a ``Settings``
    built in code reaches every part of a worker; the environment is read only for an app made some
    other way.
    """
    settings = _settings_of_app.get(app)
    return settings if settings is not None else get_settings()


@lru_cache(maxsize=1)
def get_celery() -> Celery:
    return make_celery(get_settings())


PUBLISH_BATCH = 1000
"""Messages sent to Redis in one pipeline (kombu's ``Producer.batch``) and then marked published: one
round trip per batch instead of one per message, and a failed batch leaves at most this many jobs to
the outbox relay (their delivery is uncertain, so they are not marked; a duplicate finds nothing to
claim)."""

PUBLISH_ATTEMPTS = 3
"""Tries per batch (a connection blip), 0.2 s apart after the first; then the rest wait in the outbox."""


def publish(app: Celery, jobs: Sequence[QueuedJob]) -> list[str]:
    """Send one message per job to its queue; return the ids the broker accepted.

    Each message names the job and the store it belongs to (``STORE_KWARG``). One producer (and its
    connection, from the app's pool) sends them all. On Redis the messages go in pipelined batches of
    ``PUBLISH_BATCH``: an id is returned only once the pipeline holding its message has executed, so
    ``published_at`` is never set for a message the broker did not take. The embedded queue (no
    batching) sends one at a time. Stops at the first batch that fails ``PUBLISH_ATTEMPTS`` times:
    the rest stay in the outbox (``published_at`` NULL) for the reconciler.
    """
    published: list[str] = []
    if not jobs:
        return published
    store = store_fingerprint(settings_of(app).resolved_database_url)
    sender = _Sender(app, {STORE_KWARG: store} if store is not None else {})
    try:
        with app.producer_or_acquire() as producer:
            size = PUBLISH_BATCH if producer.supports_batch_publish else 1
            for start in range(0, len(jobs), size):
                batch = jobs[start : start + size]
                error = sender.send_with_retries(producer, batch)
                if error is not None:
                    if not published:
                        raise Unreachable(f"cannot reach the broker: {error}") from error
                    break
                published.extend(job.job_id for job in batch)
    except (KombuError, OSError) as error:  # the producer's connection could not be made
        if not published:
            raise Unreachable(f"cannot reach the broker: {error}") from error
    return published


class _Sender:
    """Builds and sends train messages as ``app.send_task`` would, with the parts that are the same
    for every message worked out once (the queue declared once per producer, the origin, the kwargs'
    repr). ``send_task`` spends ~80 us of its ~140 us per message on those and on per-call lookups."""

    def __init__(self, app: Celery, kwargs: dict[str, str]) -> None:
        self.amqp = app.amqp
        self.kwargs = kwargs
        self.kwargsrepr = repr(kwargs)
        self.origin = anon_nodename()
        self.reply_to = app.thread_oid
        self.sent_event = bool(app.conf.task_send_sent_event)
        self.queues: dict[str, Queue] = {}

    def send_with_retries(self, producer: Producer, batch: Sequence[QueuedJob]) -> Exception | None:
        """Send ``batch``, trying ``PUBLISH_ATTEMPTS`` times; the last error if every try failed."""
        connection = producer.connection
        assert connection is not None  # acquired from the app's pool, so bound to a connection
        # The transport's error classes (redis-py's for Redis) are all Exceptions.
        errors = cast(
            tuple[type[Exception], ...],
            (KombuError, OSError, *connection.connection_errors, *connection.channel_errors),
        )
        for attempt in range(PUBLISH_ATTEMPTS):
            try:
                self.send(producer, batch)
                return None
            except errors as error:
                if attempt == PUBLISH_ATTEMPTS - 1:
                    return error
                time.sleep(0.2 * attempt)
        return None

    def send(self, producer: Producer, batch: Sequence[QueuedJob]) -> None:
        """Send ``batch``'s messages; on Redis, one pipeline executed when the ``with`` exits."""
        # Producer.batch is new in kombu 5.7; celery-types' stubs do not have it yet.
        with producer.batch(max_size=len(batch) + 1):  # type: ignore[attr-defined]
            for job in batch:
                queue = self.queue(producer, job.queue)
                args = [job.job_id]
                task_id = uuid()
                message = self.amqp.create_task_message(
                    task_id,
                    TRAIN_TASK,
                    args,
                    self.kwargs,
                    reply_to=self.reply_to,
                    create_sent_event=self.sent_event,
                    origin=self.origin,
                    argsrepr=repr(args),
                    kwargsrepr=self.kwargsrepr,
                    ignore_result=None,
                )
                self.amqp.send_task_message(
                    producer, TRAIN_TASK, message, queue=queue, routing_key=job.queue, retry=False, declare=[]
                )

    def queue(self, producer: Producer, name: str) -> Queue:
        queue = self.queues.get(name)
        if queue is None:
            queue = self.amqp.queues[name]
            producer.maybe_declare(queue)
            self.queues[name] = queue
        return queue
