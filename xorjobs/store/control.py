"""User lifecycle commands on the store: cancel and retry."""

from __future__ import annotations

from sqlalchemy import delete, select, update

from xorjobs.defaults import IDS_PER_STATEMENT
from xorjobs.errors import NotFound
from xorjobs.store.clock import utcnow
from xorjobs.store.engine import write_session
from xorjobs.store.ids import is_sweep_id
from xorjobs.store.requeue import requeue_values
from xorjobs.store.retry import is_conflict_error, retrying
from xorjobs.store.row_locks import lock_job_rows
from xorjobs.store.sweeps import QueuedJob
from xorjobs.store.tables import CostCurve, Job, JobState, Sweep


def cancel(url: str, sweep_or_job_id: str) -> list[str]:
    """Cancel the queued and running jobs of a sweep (or one job); returns the ids cancelled.

    A queued job never starts (its claim finds it cancelled); a running one stops at its next heartbeat
    or progress write, whose fence now fails, and keeps the state ``cancelled``.

    The rows are locked in id order first, as every writer of many job rows does (``row_locks``): a
    single UPDATE took them in its plan's order and deadlocked with a pack's heartbeat on Postgres. A
    conflict the database settles by aborting us is retried: nothing of it was committed.
    """
    column = Job.sweep_id if is_sweep_id(sweep_or_job_id) else Job.id
    active = Job.state.in_([JobState.QUEUED, JobState.RUNNING])

    def cancel_active() -> list[str]:
        with write_session(url) as session:
            _require(session, sweep_or_job_id)
            locked = lock_job_rows(session, column == sweep_or_job_id, active)
            cancelled: list[str] = []
            for start in range(0, len(locked), IDS_PER_STATEMENT):
                cancelled += session.scalars(
                    update(Job)
                    .where(Job.id.in_(locked[start : start + IDS_PER_STATEMENT]), active)
                    .values(state=JobState.CANCELLED, finished_at=utcnow(), lease_expires_at=None)
                    .returning(Job.id)
                ).all()
            return cancelled

    return retrying(cancel_active, what=f"cancelling {sweep_or_job_id}", retry_if=is_conflict_error)


def retry(url: str, sweep_id: str, failed_only: bool = False) -> list[QueuedJob]:
    """Re-queue what did not succeed (failed and cancelled jobs, or only failed ones), and send the
    still-queued jobs again.

    The attempts used so far are forgiven (max_attempts counts afresh), but the attempt counter keeps
    growing so an old attempt's fencing token can never match again. Old costs are removed.

    A queued job may be stranded (its message lost with a failed delivery or a broker restart), and
    the store cannot tell it from one waiting its turn; the recovery loop's broker census finds those
    within a few passes, but a person who asks for a retry gets it now: every queued job of the sweep
    goes back to the outbox and is published again. A duplicate message costs one read of the job
    (the claim is fenced), never a second run.
    """
    states = [JobState.FAILED] if failed_only else [JobState.FAILED, JobState.CANCELLED]
    with write_session(url) as session:
        _require(session, sweep_id)
        # Every row both UPDATEs touch, locked in the one order first (see ``cancel``).
        lock_job_rows(session, Job.sweep_id == sweep_id, Job.state.in_([JobState.QUEUED, *states]))
        # First, before the retried jobs join them in state queued.
        stranded = session.execute(
            update(Job)
            .where(Job.sweep_id == sweep_id, Job.state == JobState.QUEUED)
            .values(published_at=None)
            .returning(Job.id, Job.queue)
        ).all()
        ids = session.execute(
            update(Job)
            .where(Job.sweep_id == sweep_id, Job.state.in_(states))
            .values(
                **requeue_values(),
                attempts_forgiven=Job.attempt,
                error=None,
                finished_at=None,
                final_cost=None,
                final_cost_kind=None,
                last_logged_cost=None,
                last_logged_cost_kind=None,
                hypothesis_json=None,
                predicted_json=None,
                accuracy=None,
                engine=None,
                steps_trained=None,
                stopped_at_step=None,
                stop_reason=None,
            )
            .returning(Job.id, Job.queue)
        ).all()
        job_ids = [job_id for job_id, _ in ids]
        for start in range(0, len(job_ids), IDS_PER_STATEMENT):
            session.execute(
                delete(CostCurve).where(CostCurve.job_id.in_(job_ids[start : start + IDS_PER_STATEMENT]))
            )
    return [QueuedJob(job_id, queue) for job_id, queue in [*ids, *stranded]]


def _require(session: object, sweep_or_job_id: str) -> None:
    from sqlalchemy.orm import Session

    assert isinstance(session, Session)
    table = Sweep if is_sweep_id(sweep_or_job_id) else Job
    if session.scalar(select(table.id).where(table.id == sweep_or_job_id)) is None:
        kind = "sweep" if is_sweep_id(sweep_or_job_id) else "job"
        raise NotFound(f"no {kind} {sweep_or_job_id}")
