"""What every front end does, as JSON-ready dicts: the API routes and the CLI's in-process mode both call
these, so the two cannot drift apart (one path per action)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from functools import cached_property
from typing import TYPE_CHECKING, Any

from celery import Celery

from xorjobs import analysis
from xorjobs.analysis import DEFAULT_THRESHOLD
from xorjobs.export_formats import ExportFormat
from xorjobs.queue import make_celery, publish
from xorjobs.settings import Settings
from xorjobs.spec import SweepSpec
from xorjobs.store import control, housekeeping, queries
from xorjobs.store.export import curves_by_job, export_text
from xorjobs.store.schema import ensure_schema
from xorjobs.store.sweeps import mark_published
from xorjobs.submit import submit_sweep

if TYPE_CHECKING:
    from matplotlib.figure import Figure


class Service:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.url = settings.resolved_database_url

    @cached_property
    def celery(self) -> Celery:
        return make_celery(self.settings)

    def ready(self) -> Service:
        ensure_schema(self.url)
        return self

    def submit(self, spec: SweepSpec, idempotency_key: str | None = None) -> dict[str, Any]:
        submission = submit_sweep(self.url, self.celery, spec, idempotency_key)
        status = queries.sweep_status(self.url, submission.sweep.sweep_id)
        warnings = []
        if submission.unpublished:
            warnings.append(
                f"the broker did not take {submission.unpublished} job(s) now; they stay queued and a "
                "worker publishes them once the broker is back"
            )
        queue = spec.queue
        if submission.sweep.created and not self.queue_has_worker(queue):
            warnings.append(f"no live worker serves queue {queue!r}; the jobs wait until one does")
        return {
            "sweep_id": status["sweep_id"],
            "created": submission.sweep.created,
            "jobs": status["jobs"],
            "warnings": warnings,
        }

    def submit_without_worker_check(self, spec: SweepSpec) -> dict[str, Any]:
        """Submit for a caller that consumes the queue itself (``xorjobs run``)."""
        submission = submit_sweep(self.url, self.celery, spec)
        return {"sweep_id": submission.sweep.sweep_id, "jobs": [job.job_id for job in submission.sweep.jobs]}

    def queue_has_worker(self, queue: str, timeout: float = 0.5) -> bool:
        """Ask the workers (a broadcast) whether any consumes ``queue``."""
        try:
            replies = self.celery.control.inspect(timeout=timeout).active_queues() or {}
        except Exception:
            return False
        return any(entry.get("name") == queue for queues in replies.values() for entry in queues)

    def sweeps(self, limit: int = 100) -> dict[str, Any]:
        return {"sweeps": queries.list_sweeps(self.url, limit)}

    def status(self, sweep_id: str | None) -> dict[str, Any]:
        return queries.sweep_status(self.url, sweep_id or queries.latest_sweep_id(self.url))

    def results(self, sweep_id: str | None) -> dict[str, Any]:
        return queries.sweep_results(self.url, sweep_id or queries.latest_sweep_id(self.url))

    def job(self, job_id: str) -> dict[str, Any]:
        return queries.job_detail(self.url, job_id)

    def costs(self, job_id: str) -> dict[str, Any]:
        return {"job_id": job_id, "costs": queries.job_costs(self.url, job_id)}

    def cancel(self, sweep_or_job_id: str) -> dict[str, Any]:
        return {"cancelled": control.cancel(self.url, sweep_or_job_id)}

    def retry(self, sweep_id: str, failed_only: bool) -> dict[str, Any]:
        jobs = control.retry(self.url, sweep_id, failed_only)
        published = publish(self.celery, jobs) if jobs else []
        mark_published(self.url, published)
        return {"retried": [job.job_id for job in jobs]}

    # --- issue 5: what a sweep found, exports, plots, housekeeping --------------------------------

    def summary(
        self, sweep_id: str | None, by: list[str], threshold: float = DEFAULT_THRESHOLD
    ) -> dict[str, Any]:
        """Per group of ``by``: counts, solve rate with its Wilson interval, final costs, convergence."""
        sweep_id = sweep_id or queries.latest_sweep_id(self.url)
        jobs = queries.sweep_status(self.url, sweep_id)["jobs"]
        return analysis.summarize(sweep_id, jobs, curves_by_job(self.url, sweep_id), by, threshold)

    def export_costs(self, sweep_id: str | None, export_format: ExportFormat) -> Iterator[str]:
        """Every cost of the sweep as CSV or JSON-lines text chunks, streamed from one query."""
        return export_text(self.url, sweep_id or queries.latest_sweep_id(self.url), export_format)

    def sweep_figure(self, sweep_id: str | None, by: list[str], threshold: float | None = None) -> Figure:
        """The sweep's cost-curve Figure, drawn from the store (``sweep_plot`` renders it as PNG)."""
        from xorjobs import plots

        sweep_id = sweep_id or queries.latest_sweep_id(self.url)
        jobs = queries.sweep_status(self.url, sweep_id)["jobs"]
        return plots.sweep_figure(sweep_id, jobs, curves_by_job(self.url, sweep_id), by, threshold)

    def sweep_plot(self, sweep_id: str | None, by: list[str], threshold: float | None = None) -> bytes:
        from xorjobs import plots

        return plots.png_bytes(self.sweep_figure(sweep_id, by, threshold))

    def job_figure(self, job_id: str) -> Figure:
        from xorjobs import plots

        return plots.job_figure(queries.job_detail(self.url, job_id), queries.job_costs(self.url, job_id))

    def job_plot(self, job_id: str) -> bytes:
        from xorjobs import plots

        return plots.png_bytes(self.job_figure(job_id))

    def delete_sweep(self, sweep_id: str, cancel_active: bool = False) -> dict[str, Any]:
        return {"deleted": [housekeeping.delete_sweep(self.url, sweep_id, cancel_active).as_dict()]}

    def prune(self, older_than_seconds: float, dry_run: bool) -> dict[str, Any]:
        """Delete the finished sweeps that ended more than ``older_than_seconds`` ago (or list them)."""
        deleted = housekeeping.prune_sweeps(self.url, dt.timedelta(seconds=older_than_seconds), dry_run)
        return {"dry_run": dry_run, "deleted": [sweep.as_dict() for sweep in deleted]}
