"""Read queries. ORM rows become plain dicts before the session closes (nothing lazy leaks out)."""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from typing import Any

from sqlalchemy import ColumnElement, case, exists, func, literal, or_, select

from xorjobs.defaults import IDS_PER_STATEMENT
from xorjobs.errors import NotFound, no_job
from xorjobs.filters import DEFAULT_ORDER, NO_JOB_FILTER, NO_SWEEP_FILTER, JobFilter, JobOrder, SweepFilter
from xorjobs.store.curve_codec import decode_curve
from xorjobs.store.engine import read_session
from xorjobs.store.floats import FloatKind, decode_float
from xorjobs.store.progress import sweep_progress
from xorjobs.store.tables import CostCurve, Job, JobState, Sweep

JobRecord = dict[str, Any]


def _iso(moment: dt.datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _seconds(start: dt.datetime | None, end: dt.datetime | None) -> float | None:
    return (end - start).total_seconds() if start is not None and end is not None else None


def job_record(job: Job) -> JobRecord:
    """A job as the CLI and API show it (issue 2's JSON contract: these keys are stable)."""
    finished = job.state == JobState.SUCCEEDED
    return {
        "id": job.id,
        "sweep_id": job.sweep_id,
        "variant": job.variant,
        "seed": job.seed,
        "lr": job.lr,
        "steps": job.steps,
        "log_every": job.log_every,
        "device": job.device,
        "queue": job.queue,
        "state": job.state,
        "attempt": job.attempt,
        "error": job.error,
        "created_at": _iso(job.created_at),
        "started_at": _iso(job.started_at),
        "finished_at": _iso(job.finished_at),
        "duration_seconds": _seconds(job.started_at, job.finished_at) if finished else None,
        "worker": job.worker,
        "device_name": job.device_name,
        "torch_version": job.torch_version,
        "cpu_capability": job.cpu_capability,
        "engine": job.engine,
        "stop_below": job.stop_below,
        "stop_when_solved": bool(job.stop_when_solved),
        # Rows stored before revision 0005 have no steps_trained: they trained all their steps.
        "steps_trained": (job.steps_trained or job.steps) if finished else None,
        "stopped_at_step": job.stopped_at_step if finished else None,
        "stop_reason": job.stop_reason if finished else None,
        "final_cost": _stored_float(job.final_cost, job.final_cost_kind) if finished else None,
        "last_logged_cost": _stored_float(job.last_logged_cost, job.last_logged_cost_kind)
        if finished
        else None,
        "accuracy": job.accuracy if finished else None,
        "hypothesis": _floats(job.hypothesis_json) if finished else None,
        "predicted": _floats(job.predicted_json) if finished else None,
    }


def _stored_float(value: float | None, kind: int | None) -> float | None:
    return None if kind is None else decode_float(value, kind)


def _floats(text: str | None) -> list[float] | None:
    return None if text is None else [float(value) for value in json.loads(text)]


def empty_counts() -> dict[str, int]:
    return {state.value: 0 for state in JobState}


def _counts_by_sweep(session: Any, sweep_ids: list[str]) -> dict[str, dict[str, int]]:
    counts: dict[str, dict[str, int]] = defaultdict(empty_counts)
    rows = session.execute(
        select(Job.sweep_id, Job.state, func.count())
        .where(Job.sweep_id.in_(sweep_ids))
        .group_by(Job.sweep_id, Job.state)
    ).all()
    for sweep_id, state, count in rows:
        counts[sweep_id][state] = count
    return counts


def _sweep_record(sweep: Sweep, counts: dict[str, int], with_spec: bool = True) -> dict[str, Any]:
    record: dict[str, Any] = {
        "sweep_id": sweep.id,
        "name": sweep.name,
        "created_at": _iso(sweep.created_at),
        "size": sweep.job_count,
        "counts": counts,
    }
    if with_spec:
        record["spec"] = json.loads(sweep.spec_json)
    return record


def list_sweeps(
    url: str, limit: int = 100, sweep_filter: SweepFilter = NO_SWEEP_FILTER
) -> list[dict[str, Any]]:
    """Newest first, each with its state counts; only those ``sweep_filter`` keeps (``xorjobs.filters``)."""
    statement = select(Sweep)
    if sweep_filter.name is not None:
        statement = statement.where(Sweep.name.icontains(sweep_filter.name, autoescape=True))
    if sweep_filter.states:
        statement = statement.where(
            exists().where(Job.sweep_id == Sweep.id, Job.state.in_(sweep_filter.states))
        )
    with read_session(url) as session:
        sweeps = session.scalars(statement.order_by(Sweep.created_at.desc(), Sweep.id).limit(limit)).all()
        counts = _counts_by_sweep(session, [sweep.id for sweep in sweeps])
        # No spec in the list: the dashboard polls it every second and a sweep of 10,000 seeds carries
        # them all; one sweep's spec is in sweep_status (GET /sweeps/{id}, `xorjobs status --json`).
        return [_sweep_record(sweep, counts[sweep.id], with_spec=False) for sweep in sweeps]


def latest_sweep_id(url: str) -> str:
    with read_session(url) as session:
        sweep_id = session.scalar(select(Sweep.id).order_by(Sweep.created_at.desc()).limit(1))
    if sweep_id is None:
        raise NotFound("there are no sweeps yet; submit one with `xorjobs submit` or `xorjobs run`")
    return sweep_id


def job_conditions(job_filter: JobFilter) -> list[ColumnElement[bool]]:
    """The filter as SQL conditions on ``Job`` (bound parameters only), to AND together."""
    conditions: list[ColumnElement[bool]] = []
    if job_filter.states:
        conditions.append(Job.state.in_(job_filter.states))
    if job_filter.variants:
        conditions.append(Job.variant.in_(job_filter.variants))
    if job_filter.lrs:
        conditions.append(Job.lr.in_(job_filter.lrs))
    if job_filter.seed_ranges:
        conditions.append(
            or_(
                *(
                    Job.seed == low if low == high else Job.seed.between(low, high)
                    for low, high in job_filter.seed_ranges
                )
            )
        )
    return conditions


def _sort_rank(kind: Any, descending: bool) -> ColumnElement[int]:
    """Where a stored float sorts by its kind (``floats.FloatKind``): -inf, finite, +inf (reversed when
    descending), then NaN, then no value at all (not succeeded, or not recorded)."""
    first, last = (
        (FloatKind.POS_INF, FloatKind.NEG_INF) if descending else (FloatKind.NEG_INF, FloatKind.POS_INF)
    )
    return case(
        (Job.state != JobState.SUCCEEDED, literal(4)),
        (kind == first, literal(0)),
        (kind == FloatKind.FINITE, literal(1)),
        (kind == last, literal(2)),
        (kind == FloatKind.NAN, literal(3)),
        else_=literal(4),
    )


def job_ordering(order: JobOrder) -> list[Any]:
    """ORDER BY for ``order``: the sort key (missing values and NaN last), then expansion order."""
    if order.sort is None:
        return [Job.position]
    if order.sort == "final_cost":
        value: Any = Job.final_cost
        keys: list[Any] = [_sort_rank(Job.final_cost_kind, order.descending)]
    else:
        value = {"accuracy": Job.accuracy, "seed": Job.seed, "lr": Job.lr}[order.sort]
        # Accuracy exists only for a succeeded job (never NaN); seed and lr always.
        missing = case((Job.state != JobState.SUCCEEDED, literal(1)), else_=literal(0))
        keys = [missing] if order.sort == "accuracy" else []
    keys.append(value.desc() if order.descending else value.asc())
    return [*keys, Job.position]


def sweep_status(
    url: str, sweep_id: str, job_filter: JobFilter = NO_JOB_FILTER, order: JobOrder = DEFAULT_ORDER
) -> dict[str, Any]:
    """The sweep, its state counts (every state, zeros included: the whole sweep's, whatever the filter)
    and the jobs ``job_filter`` keeps, in expansion order or as ``order`` sorts and limits them."""
    with read_session(url) as session:
        sweep = session.get(Sweep, sweep_id)
        if sweep is None:
            raise NotFound(f"no sweep {sweep_id}")
        statement = (
            select(Job)
            .where(Job.sweep_id == sweep_id, *job_conditions(job_filter))
            .order_by(*job_ordering(order))
            .limit(order.limit)
        )
        jobs = session.scalars(statement).all()
        record = _sweep_record(sweep, _counts_by_sweep(session, [sweep_id])[sweep_id])
        record["progress"], record["elapsed_seconds"] = sweep_progress(session, sweep_id, record["counts"])
        record["jobs"] = [job_record(job) for job in jobs]
        return record


def sweep_results(
    url: str, sweep_id: str, job_filter: JobFilter = NO_JOB_FILTER, order: JobOrder = DEFAULT_ORDER
) -> dict[str, Any]:
    """The kept jobs' records with their costs; all costs come from one query, not one per job."""
    status = sweep_status(url, sweep_id, job_filter, order)
    every_job = job_filter.is_empty and order.limit is None
    costs = costs_by_job(url, sweep_id, None if every_job else [job["id"] for job in status["jobs"]])
    for job in status["jobs"]:
        job["costs"] = costs.get(job["id"], [])
    return {"sweep_id": sweep_id, "name": status["name"], "counts": status["counts"], "jobs": status["jobs"]}


def costs_by_job(url: str, sweep_id: str, job_ids: list[str] | None = None) -> dict[str, list[list[Any]]]:
    """Every job's costs, or only those of ``job_ids`` (a few queries of at most IDS_PER_STATEMENT ids)."""
    base = (
        select(CostCurve.job_id, CostCurve.curve)
        .join(Job, Job.id == CostCurve.job_id)
        .where(Job.sweep_id == sweep_id)
    )
    if job_ids is None:
        statements = [base]
    else:
        statements = [
            base.where(CostCurve.job_id.in_(job_ids[start : start + IDS_PER_STATEMENT]))
            for start in range(0, len(job_ids), IDS_PER_STATEMENT)
        ]
    result: dict[str, list[list[Any]]] = {}
    with read_session(url) as session:
        for statement in statements:
            for job_id, curve in session.execute(statement):
                result[job_id] = [[step, cost] for step, cost in decode_curve(curve)]
    return result


def job_detail(url: str, job_id: str) -> JobRecord:
    with read_session(url) as session:
        job = session.get(Job, job_id)
        if job is None:
            raise no_job(job_id)
        return job_record(job)


def job_costs(url: str, job_id: str) -> list[list[Any]]:
    with read_session(url) as session:
        if session.get(Job, job_id) is None:
            raise no_job(job_id)
        curve = session.scalar(select(CostCurve.curve).where(CostCurve.job_id == job_id))
    return [] if curve is None else [[step, cost] for step, cost in decode_curve(curve)]
