"""The Celery task. Thin on purpose: it only hands the job id to the runner."""

from __future__ import annotations

from celery import Task

from worker.celery_app import app
from worker.runner import run_job
from xorjobs.queue import TRAIN_TASK
from xorjobs.settings import get_settings


@app.task(name=TRAIN_TASK, bind=True)
def train_job(self: Task, job_id: str) -> str:  # type: ignore[type-arg]
    """Train the job ``job_id`` (a string id from the store; messages carry nothing else)."""
    hostname = self.request.hostname or "unknown"
    return run_job(job_id, hostname, get_settings()).value
