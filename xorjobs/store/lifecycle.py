"""A job's life on the worker side: claim, heartbeat, progress, finish or fail — all fenced.

Every write of an attempt is conditional on ``jobs.attempt`` still being that attempt and the job still
running, so a duplicate delivery, a reaped "zombie" or a cancelled job cannot write over newer state
(the fencing-token pattern; reliability notes §0.2). Each function is one short write transaction.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from xorjobs.defaults import clip_error, out_of_attempts_error
from xorjobs.errors import UnknownJob, XorjobsError
from xorjobs.store.engine import describe, read_session, write_session
from xorjobs.store.floats import encode_float, json_safe
from xorjobs.store.tables import Cost, Job, JobState


class LeaseLost(XorjobsError):
    """This attempt no longer owns the job (re-queued, cancelled, or taken over by a newer attempt)."""


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class Claim:
    """What a worker needs to train a job it has claimed."""

    job_id: str
    attempt: int
    variant: str
    seed: int
    lr: float
    steps: int
    log_every: int
    device: str


@dataclass(frozen=True)
class Outcome:
    """The finished record a worker stores (plain values; ``models`` stays out of the store)."""

    unwritten_costs: Sequence[tuple[int, float]]
    """Logged costs not yet written by progress updates (all of them for a short job)."""
    final_cost: float | None
    """The cost at the last logged step."""
    hypothesis: Sequence[float]
    predicted: Sequence[float]
    accuracy: float
    device_name: str
    cpu_capability: str
    torch_version: str


def claim_job(
    url: str,
    job_id: str,
    worker: str,
    lease_seconds: float,
    max_attempts: int,
    holder_is_dead: Callable[[str], bool] = lambda _worker: False,
) -> Claim | None:
    """Atomically take a job that is queued (or running but orphaned) and bump its attempt.

    A running job is orphaned when its lease ran out, or when ``holder_is_dead(worker)`` says its holder
    is gone: a worker knows that of a training process on its own machine killed mid-job (whose message
    Celery redelivers at once), and then takes over without waiting for the lease.

    Returns None when there is nothing to do: the job is running elsewhere, finished, cancelled, or was
    failed here for having used up its attempts. Raises UnknownJob when the store has no such job.
    """
    now = utcnow()
    with write_session(url) as session:
        job = session.get(Job, job_id)
        if job is None:
            raise UnknownJob(
                f"job {job_id} is not in the store {describe(url)} (is this worker on the right store?)"
            )
        orphaned = job.state == JobState.RUNNING and (
            (job.lease_expires_at is not None and job.lease_expires_at < now)
            or (job.worker is not None and holder_is_dead(job.worker))
        )
        if job.state != JobState.QUEUED and not orphaned:
            return None
        if job.attempts_used >= max_attempts:
            _fail_exhausted(session, job, max_attempts, now)
            return None
        row = session.execute(
            update(Job)
            .where(Job.id == job_id, Job.state == job.state, Job.attempt == job.attempt)
            .values(**claim_values(now, worker, lease_seconds))
            .returning(Job.attempt)
        ).first()
        if row is None:
            return None
        return Claim(job.id, row.attempt, job.variant, job.seed, job.lr, job.steps, job.log_every, job.device)


def claim_values(now: dt.datetime, worker: str, lease_seconds: float) -> dict[str, object]:
    """What a claim writes: running, the next attempt (the new fencing token), a fresh lease."""
    return {
        "state": JobState.RUNNING,
        "attempt": Job.attempt + 1,
        "lease_expires_at": now + dt.timedelta(seconds=lease_seconds),
        "started_at": now,
        "worker": worker,
        "error": None,
    }


def _fail_exhausted(session: Session, job: Job, max_attempts: int, now: dt.datetime) -> None:
    session.execute(
        update(Job)
        .where(Job.id == job.id, Job.attempt == job.attempt, Job.state == job.state)
        .values(
            state=JobState.FAILED,
            finished_at=now,
            error=out_of_attempts_error(max_attempts),
        )
    )


def _renew(session: Session, job_id: str, attempt: int, lease_seconds: float) -> None:
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.attempt == attempt, Job.state == JobState.RUNNING)
        .values(lease_expires_at=utcnow() + dt.timedelta(seconds=lease_seconds))
    )
    if result.rowcount == 0:  # type: ignore[attr-defined]
        raise LeaseLost(f"job {job_id}: attempt {attempt} no longer owns it")


def renew_lease(url: str, job_id: str, attempt: int, lease_seconds: float) -> None:
    """Heartbeat. Raises LeaseLost when the attempt was fenced off (or the job cancelled)."""
    with write_session(url) as session:
        _renew(session, job_id, attempt, lease_seconds)


def cost_rows(job_id: str, attempt: int, costs: Sequence[tuple[int, float]]) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for step, cost in costs:
        value, kind = encode_float(cost)
        rows.append({"job_id": job_id, "step": step, "value": value, "kind": int(kind), "attempt": attempt})
    return rows


def upsert_cost_rows(session: Session, rows: Sequence[dict[str, object]]) -> None:
    """Insert or overwrite cost rows of any number of jobs: idempotent per (job, step), so a retry never
    doubles a step. One statement, compiled once and sent with all rows as parameters (executemany,
    batched by SQLAlchemy's insertmanyvalues): a pack's 50,000 rows cost one round of compilation, not
    one per job."""
    if not rows:
        return
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    costs = Cost.__table__
    assert isinstance(costs, Table)
    statement = insert(costs)  # Core, not the ORM: its bulk path costs more than the database here
    statement = statement.on_conflict_do_update(
        index_elements=[costs.c.job_id, costs.c.step],
        set_={
            "value": statement.excluded.value,
            "kind": statement.excluded.kind,
            "attempt": statement.excluded.attempt,
        },
    )
    session.connection().execute(statement, list(rows))


def upsert_costs_in_transaction(
    session: Session, job_id: str, attempt: int, costs: Sequence[tuple[int, float]]
) -> None:
    """``upsert_cost_rows`` for one job's costs."""
    upsert_cost_rows(session, cost_rows(job_id, attempt, costs))


def record_costs(
    url: str, job_id: str, attempt: int, costs: Sequence[tuple[int, float]], lease_seconds: float
) -> None:
    """Write a chunk of costs and renew the lease, in one transaction fenced on the attempt."""
    with write_session(url) as session:
        _renew(session, job_id, attempt, lease_seconds)
        upsert_costs_in_transaction(session, job_id, attempt, costs)


def write_results_in_transaction(session: Session, results: Sequence[tuple[str, int, Outcome]]) -> None:
    """Inside the caller's transaction, which has fenced every ``(job id, attempt)``: the remaining
    costs, the results and state succeeded, for any number of jobs in two statements."""
    rows: list[dict[str, object]] = []
    for job_id, attempt, outcome in results:
        rows += cost_rows(job_id, attempt, outcome.unwritten_costs)
    upsert_cost_rows(session, rows)
    if not results:
        return
    jobs = Job.__table__
    assert isinstance(jobs, Table)
    now = utcnow()
    statement = (
        update(jobs)
        .where(jobs.c.id == bindparam("match_id"), jobs.c.attempt == bindparam("match_attempt"))
        .values(
            state=JobState.SUCCEEDED,
            finished_at=now,
            lease_expires_at=None,
            final_cost=bindparam("new_final_cost"),
            final_cost_kind=bindparam("new_final_cost_kind"),
            hypothesis_json=bindparam("new_hypothesis_json"),
            predicted_json=bindparam("new_predicted_json"),
            accuracy=bindparam("new_accuracy"),
            device_name=bindparam("new_device_name"),
            cpu_capability=bindparam("new_cpu_capability"),
            torch_version=bindparam("new_torch_version"),
        )
    )
    parameters = []
    for job_id, attempt, outcome in results:
        final_value, final_kind = (
            encode_float(outcome.final_cost) if outcome.final_cost is not None else (None, None)
        )
        parameters.append(
            {
                "match_id": job_id,
                "match_attempt": attempt,
                "new_final_cost": final_value,
                "new_final_cost_kind": None if final_kind is None else int(final_kind),
                "new_hypothesis_json": json.dumps(json_safe(list(outcome.hypothesis))),
                "new_predicted_json": json.dumps(json_safe(list(outcome.predicted))),
                "new_accuracy": outcome.accuracy,
                "new_device_name": outcome.device_name,
                "new_cpu_capability": outcome.cpu_capability,
                "new_torch_version": outcome.torch_version,
            }
        )
    session.connection().execute(statement, parameters)


def write_result_in_transaction(session: Session, job_id: str, attempt: int, outcome: Outcome) -> None:
    """Inside the caller's (fenced) transaction: the remaining costs, the result, state succeeded."""
    write_results_in_transaction(session, [(job_id, attempt, outcome)])


def finish_job(url: str, job_id: str, attempt: int, outcome: Outcome) -> None:
    """Write the remaining costs and the result, and mark the job succeeded: all or nothing."""
    with write_session(url) as session:
        _renew(session, job_id, attempt, lease_seconds=0)
        write_result_in_transaction(session, job_id, attempt, outcome)


def fail_job(url: str, job_id: str, attempt: int, error: str) -> bool:
    """Mark this attempt's job failed with the error text; False when the attempt was fenced off."""
    with write_session(url) as session:
        result = session.execute(
            update(Job)
            .where(Job.id == job_id, Job.attempt == attempt, Job.state == JobState.RUNNING)
            .values(
                state=JobState.FAILED, finished_at=utcnow(), lease_expires_at=None, error=clip_error(error)
            )
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]


def release_job(url: str, job_id: str, attempt: int) -> bool:
    """Give a running job back to the queue at once (a clean stop, e.g. Ctrl-C during ``run``)."""
    with write_session(url) as session:
        result = session.execute(
            update(Job)
            .where(Job.id == job_id, Job.attempt == attempt, Job.state == JobState.RUNNING)
            .values(state=JobState.QUEUED, lease_expires_at=None, published_at=None)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]


@dataclass(frozen=True)
class JobPeek:
    """A job's state as read without the write lock (it may change before a claim; the claim decides)."""

    variant: str
    device: str
    state: str
    lease_expires_at: dt.datetime | None
    worker: str | None

    def claimable(self, holder_is_dead: Callable[[str], bool]) -> bool:
        if self.state == JobState.QUEUED:
            return True
        if self.state != JobState.RUNNING:
            return False
        expired = self.lease_expires_at is not None and self.lease_expires_at < utcnow()
        return expired or (self.worker is not None and holder_is_dead(self.worker))


def peek_job(url: str, job_id: str) -> JobPeek | None:
    """Read a job's kind and state (None when the store has no such job)."""
    with read_session(url) as session:
        row = session.execute(
            select(Job.variant, Job.device, Job.state, Job.lease_expires_at, Job.worker).where(
                Job.id == job_id
            )
        ).first()
    return None if row is None else JobPeek(*row)
