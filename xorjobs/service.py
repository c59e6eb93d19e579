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
from xorjobs.defaults import VERIFY_WAIT_SECONDS
from xorjobs.export_formats import ExportFormat
from xorjobs.filters import DEFAULT_ORDER, NO_JOB_FILTER, NO_SWEEP_FILTER, JobFilter, JobOrder, SweepFilter
from xorjobs.queue import make_celery, publish
from xorjobs.queue_watch import QueueWatch
from xorjobs.settings import Settings
from xorjobs.spec import SweepSpec
from xorjobs.store import control, housekeeping, queries
from xorjobs.store.export import curves_by_job, export_text
from xorjobs.store.schema import check_readable, check_servable, ensure_schema
from xorjobs.store.sweeps import mark_published
from xorjobs.store.versions import sweep_version
from xorjobs.submit import submit_sweep
from xorjobs.verify_request import verify_on_worker

if TYPE_CHECKING:
    from matplotlib.figure import Figure


class Service:
    """One store and one broker, as the API and the CLI's in-process mode use them.

    The store is checked on first use, never migrated (issue 10, section 2): a read on a store that does
    not exist raises NoStore and creates nothing. ``creates_embedded_store`` is for the CLI's own
    in-process mode: its submits (``xorjobs run``, ``xorjobs submit``) create or upgrade the embedded
    default store, the SQLite file in XORJOBS_HOME, which no server shares.
    """

    def __init__(self, settings: Settings, *, creates_embedded_store: bool = False) -> None:
        self.settings = settings
        self.url = settings.resolved_database_url
        self.creates_embedded_store = creates_embedded_store
        self._store_checked = False

    @cached_property
    def celery(self) -> Celery:
        return make_celery(self.settings)

    @cached_property
    def queue_watch(self) -> QueueWatch:
        return QueueWatch(self.celery)

    def ready(self, *, submitting: bool = False) -> Service:
        """Check now that the store is at head (``submitting``: create the embedded store if it owns it)."""
        self._store(submitting=submitting)
        return self

    def ready_to_serve(self) -> Service:
        """For the API at start: refuse (exit 4, naming ``xorjobs db upgrade``) unless the store is at
        head. A server never creates or migrates its store."""
        check_servable(self.url)
        self._store_checked = True
        return self

    def _store(self, submitting: bool = False) -> str:
        """The store's URL, once it has been checked (or, for an embedded submit, created)."""
        if not self._store_checked:
            embedded = self.settings.database_url is None
            if submitting and embedded and self.creates_embedded_store:
                ensure_schema(self.url)
            else:
                check_readable(self.url, _how_to_create(embedded))
            self._store_checked = True
        return self.url

    def submit(self, spec: SweepSpec, idempotency_key: str | None = None) -> dict[str, Any]:
        url = self._store(submitting=True)
        submission = submit_sweep(url, self.celery, spec, idempotency_key)
        status = queries.sweep_status(url, submission.sweep.sweep_id)
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
        submission = submit_sweep(self._store(submitting=True), self.celery, spec)
        return {"sweep_id": submission.sweep.sweep_id, "jobs": [job.job_id for job in submission.sweep.jobs]}

    def queue_has_worker(self, queue: str) -> bool:
        """Whether a live worker consumes ``queue``, as last asked (off the submit path: see QueueWatch)."""
        return self.queue_watch.serves(queue)

    def sweeps(self, limit: int = 100, sweep_filter: SweepFilter = NO_SWEEP_FILTER) -> dict[str, Any]:
        url = self._store()
        return {"sweeps": queries.list_sweeps(url, limit, sweep_filter)}

    def status(
        self, sweep_id: str | None, job_filter: JobFilter = NO_JOB_FILTER, order: JobOrder = DEFAULT_ORDER
    ) -> dict[str, Any]:
        url = self._store()
        return queries.sweep_status(url, sweep_id or queries.latest_sweep_id(url), job_filter, order)

    def results(
        self, sweep_id: str | None, job_filter: JobFilter = NO_JOB_FILTER, order: JobOrder = DEFAULT_ORDER
    ) -> dict[str, Any]:
        url = self._store()
        return queries.sweep_results(url, sweep_id or queries.latest_sweep_id(url), job_filter, order)

    def job(self, job_id: str) -> dict[str, Any]:
        url = self._store()
        return queries.job_detail(url, job_id)

    def costs(self, job_id: str) -> dict[str, Any]:
        url = self._store()
        return {"job_id": job_id, "costs": queries.job_costs(url, job_id)}

    def cancel(self, sweep_or_job_id: str) -> dict[str, Any]:
        url = self._store()
        return {"cancelled": control.cancel(url, sweep_or_job_id)}

    def retry(self, sweep_id: str, failed_only: bool) -> dict[str, Any]:
        url = self._store()
        jobs = control.retry(url, sweep_id, failed_only)
        published = publish(self.celery, jobs) if jobs else []
        mark_published(url, published)
        return {"retried": [job.job_id for job in jobs]}

    # --- issue 5: what a sweep found, exports, plots, housekeeping --------------------------------

    def sweep_version(self, sweep_id: str) -> str | None:
        """A short string that changes when the sweep's summary or plot can change (None: no such
        sweep); the API's ETag for them (``xorjobs.store.versions``)."""
        return sweep_version(self._store(), sweep_id)

    def summary(
        self,
        sweep_id: str | None,
        by: list[str],
        threshold: float = DEFAULT_THRESHOLD,
        job_filter: JobFilter = NO_JOB_FILTER,
    ) -> dict[str, Any]:
        """Per group of ``by`` (of the jobs ``job_filter`` keeps): counts, solve rate with its Wilson
        interval, final costs, convergence."""
        url = self._store()
        sweep_id = sweep_id or queries.latest_sweep_id(url)
        jobs = queries.sweep_status(url, sweep_id, job_filter)["jobs"]
        return analysis.summarize(sweep_id, jobs, curves_by_job(url, sweep_id, job_filter), by, threshold)

    def export_costs(
        self, sweep_id: str | None, export_format: ExportFormat, job_filter: JobFilter = NO_JOB_FILTER
    ) -> Iterator[str]:
        """The costs of the kept jobs as CSV or JSON-lines text chunks, streamed from one query."""
        url = self._store()
        return export_text(url, sweep_id or queries.latest_sweep_id(url), export_format, job_filter)

    def sweep_figure(self, sweep_id: str | None, by: list[str], threshold: float | None = None) -> Figure:
        """The sweep's cost-curve Figure, drawn from the store (``sweep_plot`` renders it as PNG)."""
        url = self._store()
        from xorjobs import plots

        sweep_id = sweep_id or queries.latest_sweep_id(url)
        jobs = queries.sweep_status(url, sweep_id)["jobs"]
        return plots.sweep_figure(sweep_id, jobs, curves_by_job(url, sweep_id), by, threshold)

    def sweep_plot(self, sweep_id: str | None, by: list[str], threshold: float | None = None) -> bytes:
        from xorjobs import plots

        return plots.png_bytes(self.sweep_figure(sweep_id, by, threshold))

    def job_figure(self, job_id: str) -> Figure:
        url = self._store()
        from xorjobs import plots

        return plots.job_figure(queries.job_detail(url, job_id), queries.job_costs(url, job_id))

    def job_plot(self, job_id: str) -> bytes:
        from xorjobs import plots

        return plots.png_bytes(self.job_figure(job_id))

    def delete_sweep(self, sweep_id: str, cancel_active: bool = False) -> dict[str, Any]:
        url = self._store()
        return {"deleted": [housekeeping.delete_sweep(url, sweep_id, cancel_active).as_dict()]}

    def verify(self, job_id: str, device: str | None = None, timeout: float | None = None) -> dict[str, Any]:
        """Re-run ``job_id`` solo in this process and compare (``xorjobs verify`` without an API). Needs
        torch: the API calls ``verify_on_worker`` instead. ``timeout`` is the HTTP backend's (a wait for a
        worker); here nothing is waited for."""
        url = self._store()
        from xorjobs.worker.verify import verify_stored_job

        return verify_stored_job(url, job_id, device)

    def verify_on_worker(
        self, job_id: str, device: str | None = None, timeout: float = VERIFY_WAIT_SECONDS
    ) -> dict[str, Any]:
        """``POST /jobs/{id}/verify``: a worker of the device's queue re-runs the job; wait for its report."""
        return verify_on_worker(self._store(), self.celery, job_id, device, timeout)

    def prune(self, older_than_seconds: float, dry_run: bool) -> dict[str, Any]:
        """Delete the finished sweeps that ended more than ``older_than_seconds`` ago (or list them)."""
        url = self._store()
        deleted = housekeeping.prune_sweeps(url, dt.timedelta(seconds=older_than_seconds), dry_run)
        return {"dry_run": dry_run, "deleted": [sweep.as_dict() for sweep in deleted]}


def _how_to_create(embedded: bool) -> str:
    """What creates the store a read did not find, for its one-line error."""
    if embedded:
        return (
            "`xorjobs submit` or `xorjobs run` creates it here "
            "(or set XORJOBS_DATABASE_URL or XORJOBS_API_URL)"
        )
    return "`xorjobs db upgrade` creates it"
