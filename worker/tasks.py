"""The Celery task. Thin on purpose: it only hands the job id to the runner."""

from __future__ import annotations

import os
import socket

from celery import Task

from xorjobs.queue import TRAIN_TASK
from xorjobs.settings import get_settings
from xorjobs.worker.celery_app import app
from xorjobs.worker.runner import run_job


# Strategy: messages of jobs a pack already finished are acked in the consumer (worker.skip_finished).
@app.task(name=TRAIN_TASK, bind=True, Strategy="xorjobs.worker.skip_finished:skip_finished")
def train_job(self: Task, job_id: str) -> str:  # type: ignore[type-arg]
    """Train the job ``job_id`` (a string id from the store; messages carry nothing else)."""
    # Node name plus pid: several training processes (prefork children) share one node name.
    worker_name = f"{self.request.hostname or socket.gethostname()}/{os.getpid()}"
    return run_job(job_id, worker_name, get_settings()).value
