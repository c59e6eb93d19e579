"""The Celery app, its settings, and publishing jobs by task name (so the API never imports torch).

Settings follow reliability notes §1.5; each says why. The database is the source of truth and the
broker only a doorbell: a message carries nothing but a job id.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from functools import lru_cache

from celery import Celery
from kombu.exceptions import OperationalError as KombuOperationalError

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


def publish(app: Celery, jobs: Sequence[QueuedJob]) -> list[str]:
    """Send one message per job to its queue; return the ids the broker accepted.

    Each message names the job and the store it belongs to (``STORE_KWARG``). Stops at the first
    failure: the rest stay in the outbox (``published_at`` NULL) for the reconciler.
    """
    published: list[str] = []
    if not jobs:
        return published
    store = store_fingerprint(settings_of(app).resolved_database_url)
    kwargs = {STORE_KWARG: store} if store is not None else {}
    try:
        with app.producer_or_acquire() as producer:
            for job in jobs:
                app.send_task(
                    TRAIN_TASK,
                    args=[job.job_id],
                    kwargs=kwargs,
                    queue=job.queue,
                    routing_key=job.queue,
                    producer=producer,
                    retry=True,
                    retry_policy={"max_retries": 2, "interval_start": 0, "interval_step": 0.2},
                )
                published.append(job.job_id)
    except (KombuOperationalError, OSError) as error:
        if not published:
            raise Unreachable(f"cannot reach the broker: {error}") from error
    return published
