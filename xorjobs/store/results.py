"""The end of an attempt: its result stored (succeeded), its error (failed), or the job handed back.

Each is one short write transaction fenced on the attempt, all or nothing.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Table, bindparam, update
from sqlalchemy.orm import Session

from xorjobs.defaults import clip_error
from xorjobs.store.clock import db_now
from xorjobs.store.costs import write_costs
from xorjobs.store.engine import write_session
from xorjobs.store.floats import encode_float, json_safe
from xorjobs.store.leases import renew_in_transaction
from xorjobs.store.requeue import requeue_values
from xorjobs.store.retry import is_conflict_error, retrying
from xorjobs.store.tables import Job, JobState


@dataclass(frozen=True)
class Outcome:
    """The finished record a worker stores (plain values; ``models`` stays out of the store)."""

    unwritten_costs: Sequence[tuple[int, float]]
    """Logged costs not yet written by progress updates (all of them for a short job)."""
    final_cost: float | None
    """The trained model's cost: the seed's criterion on ``hypothesis`` (``models.trained_cost``)."""
    hypothesis: Sequence[float]
    predicted: Sequence[float]
    accuracy: float
    device_name: str
    cpu_capability: str
    torch_version: str
    last_logged_cost: float | None = None
    """The cost at the last logged step (before that step's update, as the seed prints it)."""
    engine: str | None = None
    """The engine that trained it (``models.engine.Engine.name``: solo, exact, native, batched)."""
    steps_trained: int | None = None
    """How many steps it trained: its ``steps``, or ``stopped_at_step + 1`` when it stopped early."""
    stopped_at_step: int | None = None
    """The logged step where its early-stopping rule held (``None``: it ran all its steps)."""
    stop_reason: str | None = None
    """``cost_below`` or ``solved`` when it stopped early."""


def write_results_in_transaction(session: Session, results: Sequence[tuple[str, int, Outcome]]) -> None:
    """Inside the caller's transaction, which has fenced every ``(job id, attempt)``: the remaining
    costs, the results and state succeeded, for any number of jobs in two statements."""
    write_costs(session, [(job_id, attempt, outcome.unwritten_costs) for job_id, attempt, outcome in results])
    if not results:
        return
    jobs = Job.__table__
    assert isinstance(jobs, Table)
    statement = (
        update(jobs)
        .where(jobs.c.id == bindparam("match_id"), jobs.c.attempt == bindparam("match_attempt"))
        .values(
            state=JobState.SUCCEEDED,
            finished_at=db_now(),
            lease_expires_at=None,
            final_cost=bindparam("new_final_cost"),
            final_cost_kind=bindparam("new_final_cost_kind"),
            last_logged_cost=bindparam("new_last_logged_cost"),
            last_logged_cost_kind=bindparam("new_last_logged_cost_kind"),
            hypothesis_json=bindparam("new_hypothesis_json"),
            predicted_json=bindparam("new_predicted_json"),
            accuracy=bindparam("new_accuracy"),
            device_name=bindparam("new_device_name"),
            cpu_capability=bindparam("new_cpu_capability"),
            torch_version=bindparam("new_torch_version"),
            engine=bindparam("new_engine"),
            steps_trained=bindparam("new_steps_trained"),
            stopped_at_step=bindparam("new_stopped_at_step"),
            stop_reason=bindparam("new_stop_reason"),
        )
    )
    parameters = []
    for job_id, attempt, outcome in results:
        final_value, final_kind = _encoded(outcome.final_cost)
        logged_value, logged_kind = _encoded(outcome.last_logged_cost)
        parameters.append(
            {
                "match_id": job_id,
                "match_attempt": attempt,
                "new_final_cost": final_value,
                "new_final_cost_kind": final_kind,
                "new_last_logged_cost": logged_value,
                "new_last_logged_cost_kind": logged_kind,
                "new_hypothesis_json": json.dumps(json_safe(list(outcome.hypothesis))),
                "new_predicted_json": json.dumps(json_safe(list(outcome.predicted))),
                "new_accuracy": outcome.accuracy,
                "new_device_name": outcome.device_name,
                "new_cpu_capability": outcome.cpu_capability,
                "new_torch_version": outcome.torch_version,
                "new_engine": outcome.engine,
                "new_steps_trained": outcome.steps_trained,
                "new_stopped_at_step": outcome.stopped_at_step,
                "new_stop_reason": outcome.stop_reason,
            }
        )
    session.connection().execute(statement, parameters)


def _encoded(value: float | None) -> tuple[float | None, int | None]:
    """A nullable float as its two columns (``floats``): NULL, NULL when there is none."""
    if value is None:
        return None, None
    number, kind = encode_float(value)
    return number, int(kind)


def write_result_in_transaction(session: Session, job_id: str, attempt: int, outcome: Outcome) -> None:
    """Inside the caller's (fenced) transaction: the remaining costs, the result, state succeeded."""
    write_results_in_transaction(session, [(job_id, attempt, outcome)])


def finish_job(url: str, job_id: str, attempt: int, outcome: Outcome) -> None:
    """Write the remaining costs and the result, and mark the job succeeded: all or nothing."""

    def finish() -> None:
        with write_session(url) as session:
            renew_in_transaction(session, job_id, attempt, lease_seconds=0)
            write_result_in_transaction(session, job_id, attempt, outcome)

    retrying(finish, what=f"storing the result of job {job_id}", retry_if=is_conflict_error)


def fail_job(url: str, job_id: str, attempt: int, error: str) -> bool:
    """Mark this attempt's job failed with the error text; False when the attempt was fenced off."""
    return retrying(
        lambda: _fail(url, job_id, attempt, error), what=f"failing job {job_id}", retry_if=is_conflict_error
    )


def _fail(url: str, job_id: str, attempt: int, error: str) -> bool:
    with write_session(url) as session:
        result = session.execute(
            update(Job)
            .where(Job.id == job_id, Job.attempt == attempt, Job.state == JobState.RUNNING)
            .values(
                state=JobState.FAILED, finished_at=db_now(), lease_expires_at=None, error=clip_error(error)
            )
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]


def release_job(url: str, job_id: str, attempt: int) -> bool:
    """Give a running job back to the queue at once (a clean stop, e.g. Ctrl-C during ``run``)."""
    with write_session(url) as session:
        result = session.execute(
            update(Job)
            .where(Job.id == job_id, Job.attempt == attempt, Job.state == JobState.RUNNING)
            .values(**requeue_values())
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]
