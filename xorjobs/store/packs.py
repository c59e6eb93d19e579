"""Claiming and persisting a *pack*: several compatible queued jobs trained together by one worker.

The same fencing as single jobs, per member: every write is conditional on that member's attempt and
on it still running, and all members' writes of one kind go in one transaction (one bulk write of cost
curves per pack, not per job). A member fenced off (cancelled, taken over) simply drops out of later writes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sqlalchemy import select, tuple_, update
from sqlalchemy.orm import Session

from xorjobs.defaults import IDS_PER_STATEMENT, clip_error
from xorjobs.store.claims import Claim, claim_values
from xorjobs.store.clock import db_now, db_now_plus
from xorjobs.store.costs import write_costs
from xorjobs.store.engine import write_session
from xorjobs.store.results import Outcome, write_results_in_transaction
from xorjobs.store.retry import is_conflict_error, retrying
from xorjobs.store.row_locks import lock_job_rows
from xorjobs.store.tables import Job, JobState


def claim_companions(
    url: str, leader: Claim, worker: str, lease_seconds: float, max_attempts: int, limit: int
) -> list[Claim]:
    """Claim up to ``limit`` more queued jobs that can share ``leader``'s pack, *newest* first.

    Newest first because the queue delivers oldest first: the messages other workers take next are then
    for jobs still queued, so they start packs of their own at once instead of skipping through messages
    of jobs this pack already holds (measured: oldest-first left the second worker idle for a whole pack).
    Compatible means same variant, device, steps, log interval and early-stopping rule (a pack never
    mixes them). Postgres
    skips rows another worker is claiming (``FOR UPDATE SKIP LOCKED``); SQLite's BEGIN IMMEDIATE already
    serialises claims.
    """
    if limit <= 0:
        return []

    def claim() -> list[Claim]:
        return _claim_companions(url, leader, worker, lease_seconds, max_attempts, limit)

    return retrying(claim, what="claiming a pack's companions", retry_if=is_conflict_error)


def _claim_companions(
    url: str, leader: Claim, worker: str, lease_seconds: float, max_attempts: int, limit: int
) -> list[Claim]:
    with write_session(url) as session:
        candidates = (
            select(Job.id)
            .where(
                Job.state == JobState.QUEUED,
                Job.variant == leader.variant,
                Job.device == leader.device,
                Job.steps == leader.steps,
                Job.log_every == leader.log_every,
                Job.stop_below.is_not_distinct_from(leader.stop_below),  # NULL matches NULL
                Job.stop_when_solved == leader.stop_when_solved,
                Job.attempts_used < max_attempts,
                Job.id != leader.job_id,
            )
            .order_by(Job.created_at.desc(), Job.position.desc())
            .limit(limit)
        )
        if session.get_bind().dialect.name == "postgresql":
            # Skipping, not waiting: rows another worker is claiming are its; order is then moot.
            candidates = candidates.with_for_update(key_share=True, skip_locked=True)
        ids = list(session.scalars(candidates))
        if not ids:
            return []
        rows = session.execute(
            update(Job)
            .where(Job.id.in_(ids), Job.state == JobState.QUEUED)
            .values(**claim_values(worker, lease_seconds))
            .returning(Job.id, Job.attempt, Job.seed, Job.lr)
        ).all()
    order = {job_id: index for index, job_id in enumerate(ids)}
    claims = [
        Claim(
            job_id,
            attempt,
            leader.variant,
            seed,
            lr,
            leader.steps,
            leader.log_every,
            leader.device,
            leader.stop_below,
            leader.stop_when_solved,
        )
        for job_id, attempt, seed, lr in rows
    ]
    return sorted(claims, key=lambda claim: order[claim.job_id])


def _renew_members(session: Session, claims: Sequence[Claim], lease_seconds: float) -> set[str]:
    """Renew every still-owned member's lease; return the ids no longer owned.

    A few statements for the whole pack, not one per member: the heartbeat runs beside the training
    loop, in the same process, and hundreds of small statements every beat took the GIL from it. The
    rows are locked in id order first (``lock_job_rows``), the order every writer of many job rows
    uses, so a heartbeat and a publisher marking the same rows cannot deadlock.
    """
    if not claims:
        return set()
    owned: list[str] = []
    ordered = sorted(claims, key=lambda claim: claim.job_id)
    for start in range(0, len(ordered), IDS_PER_STATEMENT):
        chunk = ordered[start : start + IDS_PER_STATEMENT]
        locked = lock_job_rows(
            session,
            tuple_(Job.id, Job.attempt).in_([(claim.job_id, claim.attempt) for claim in chunk]),
            Job.state == JobState.RUNNING,
        )
        if locked:
            session.execute(
                update(Job).where(Job.id.in_(locked)).values(lease_expires_at=db_now_plus(lease_seconds))
            )
        owned += locked
    return {claim.job_id for claim in claims} - set(owned)


def renew_pack(url: str, claims: Sequence[Claim], lease_seconds: float) -> set[str]:
    """Heartbeat for a pack: one transaction; returns the members that were fenced off."""

    def renew() -> set[str]:
        with write_session(url) as session:
            return _renew_members(session, claims, lease_seconds)

    return retrying(renew, what="renewing a pack's leases", retry_if=is_conflict_error)


def record_pack_costs(
    url: str, costs: Mapping[Claim, Sequence[tuple[int, float]]], lease_seconds: float
) -> set[str]:
    """Write every owned member's new costs and renew its lease, in one transaction."""

    def record() -> set[str]:
        with write_session(url) as session:
            lost = _renew_members(session, list(costs), lease_seconds)
            write_costs(
                session,
                [
                    (claim.job_id, claim.attempt, chunk)
                    for claim, chunk in costs.items()
                    if claim.job_id not in lost
                ],
            )
            return lost

    return retrying(record, what="writing a pack's costs", retry_if=is_conflict_error)


def finish_pack(url: str, outcomes: Mapping[Claim, Outcome], errors: Mapping[Claim, str]) -> set[str]:
    """Store every member's result (or error) in one transaction; returns the members fenced off.

    Retried when the database aborts it for a conflict (nothing of it was committed then).
    """

    def finish() -> set[str]:
        with write_session(url) as session:
            lost = _renew_members(session, [*outcomes, *errors], lease_seconds=0)
            owned = [(claim, outcome) for claim, outcome in outcomes.items() if claim.job_id not in lost]
            write_results_in_transaction(
                session, [(claim.job_id, claim.attempt, out) for claim, out in owned]
            )
            for claim, error in errors.items():
                if claim.job_id not in lost:
                    session.execute(
                        update(Job)
                        .where(Job.id == claim.job_id, Job.attempt == claim.attempt)
                        .values(
                            state=JobState.FAILED,
                            finished_at=db_now(),
                            lease_expires_at=None,
                            error=clip_error(error),
                        )
                    )
            return lost

    return retrying(finish, what="storing a pack's results", retry_if=is_conflict_error)
