"""Every cost curve of a sweep in one streamed query (issue 5: ``xorjobs export``, ``/costs.csv``).

One row per job and logged step. A 10,000-job sweep at the default 101 logged steps is about a million
lines from 10,000 stored curves, so they are never held in memory: the query of the curves streams
(``yield_per``: a server-side cursor on Postgres, batched fetches on SQLite) and the text is produced in
chunks of lines as the curves arrive.
"""

from __future__ import annotations

from collections.abc import Iterator
from math import isfinite

from sqlalchemy import select

from xorjobs.errors import NotFound
from xorjobs.export_formats import ExportFormat
from xorjobs.filters import NO_JOB_FILTER, JobFilter
from xorjobs.store.curve_codec import Point, decode_curve
from xorjobs.store.engine import read_session
from xorjobs.store.queries import job_conditions
from xorjobs.store.tables import CostCurve, Job, Sweep

EXPORT_COLUMNS = ("job_id", "variant", "seed", "lr", "device", "step", "cost")
CURVES_PER_FETCH = 50
"""Job curves fetched from the database at a time (about 5,000 lines of export at 101 logged steps)."""

ExportRow = tuple[str, str, int, float, str, int, float]
"""One exported line's values: job_id, variant, seed, lr, device, step, cost (NaN and inf as they are)."""


def require_sweep(url: str, sweep_id: str) -> None:
    """Raise NotFound before a stream starts (once streaming, an HTTP status can no longer change)."""
    with read_session(url) as session:
        if session.scalar(select(Sweep.id).where(Sweep.id == sweep_id)) is None:
            raise NotFound(f"no sweep {sweep_id}")


def cost_batches(url: str, sweep_id: str, job_filter: JobFilter = NO_JOB_FILTER) -> Iterator[list[ExportRow]]:
    """The costs of the sweep's jobs that ``job_filter`` keeps, in job (expansion) order, then step order,
    from one streamed query of the jobs' curves, in batches of ``ExportRow``.

    Core rows on the session's connection, not ORM rows; the ``(sweep_id, position)`` unique index
    gives the order without a sort.
    """
    statement = (
        select(Job.id, Job.variant, Job.seed, Job.lr, Job.device, CostCurve.curve)
        .join(CostCurve, CostCurve.job_id == Job.id)
        .where(Job.sweep_id == sweep_id, *job_conditions(job_filter))
        .order_by(Job.position)
    )
    with read_session(url) as session:
        result = session.connection().execution_options(yield_per=CURVES_PER_FETCH).execute(statement)
        for partition in result.partitions():
            yield [
                (job_id, variant, seed, lr, device, step, cost)
                for job_id, variant, seed, lr, device, curve in partition
                for step, cost in decode_curve(curve)
            ]


def curves_by_job(url: str, sweep_id: str, job_filter: JobFilter = NO_JOB_FILTER) -> dict[str, list[Point]]:
    """The ``(step, cost)`` curve (NaN and inf as they are) of every job ``job_filter`` keeps, in job
    order, from one query: what the summary and the plots read."""
    statement = (
        select(CostCurve.job_id, CostCurve.curve)
        .join(Job, Job.id == CostCurve.job_id)
        .where(Job.sweep_id == sweep_id, *job_conditions(job_filter))
        .order_by(Job.position)
    )
    with read_session(url) as session:
        result = session.connection().execution_options(yield_per=CURVES_PER_FETCH).execute(statement)
        return {job_id: decode_curve(curve) for job_id, curve in result}


def export_text(
    url: str, sweep_id: str, export_format: ExportFormat, job_filter: JobFilter = NO_JOB_FILTER
) -> Iterator[str]:
    """The export as text chunks; raises NotFound at once (not on first iteration) for an unknown sweep."""
    require_sweep(url, sweep_id)
    batches = cost_batches(url, sweep_id, job_filter)
    return _csv_chunks(batches) if export_format is ExportFormat.CSV else _jsonl_chunks(batches)


# The lines are formatted with f-strings, not the csv and json modules (per million rows, 2.2 s
# against 5.4 s for csv.writer on the 2-core CI machine). It is safe here: every text field comes from a
# closed vocabulary that needs no quoting or escaping (ids are hex, variant and device are the spec's
# literals), and repr() of a finite float is valid CSV and JSON. tests/test_analysis.py reads the
# output back with csv.DictReader and json.loads.


def _csv_chunks(batches: Iterator[list[ExportRow]]) -> Iterator[str]:
    yield ",".join(EXPORT_COLUMNS) + "\n"
    for batch in batches:
        # repr() of NaN and ±inf is already the word every xorjobs output uses: "nan", "inf", "-inf".
        yield "".join(
            f"{job_id},{variant},{seed},{lr!r},{device},{step},{cost!r}\n"
            for job_id, variant, seed, lr, device, step, cost in batch
        )


def _jsonl_chunks(batches: Iterator[list[ExportRow]]) -> Iterator[str]:
    for batch in batches:
        yield "".join(
            f'{{"job_id": "{job_id}", "variant": "{variant}", "seed": {seed}, "lr": {lr!r}, '
            f'"device": "{device}", "step": {step}, '
            f'"cost": {_json_number(cost)}}}\n'
            for job_id, variant, seed, lr, device, step, cost in batch
        )


def _json_number(cost: float) -> str:
    """A cost as JSON: the number, or for NaN and ±inf the quoted word (bare NaN is not JSON)."""
    return repr(cost) if isfinite(cost) else f'"{cost!r}"'
