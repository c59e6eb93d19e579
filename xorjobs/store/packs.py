"""Claiming and persisting a *pack*: several compatible queued jobs trained together by one worker.

The same fencing as single jobs, per member: every write is conditional on that member's attempt and
on it still running, and all members' writes of one kind go in one transaction (one bulk write of costs
per pack, not per job). A member fenced off (cancelled, taken over) simply drops out of later writes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence

from sqlalchemy import select, tuple_, update

from xorjobs.defaults import IDS_PER_STATEMENT, clip_error
from xorjobs.store.claims import Claim, claim_values
from xorjobs.store.clock import utcnow
from xorjobs.store.costs import cost_rows, upsert_cost_rows
from xorjobs.store.engine import write_session
from xorjobs.store.results import Outcome, write_results_in_transaction
from xorjobs.store.tables import Job, JobState


def claim_companions(
    url: str, leader: Claim, worker: str, lease_seconds: float, max_attempts: int, limit: int
) -> list[Claim]:
    """Claim up to ``limit`` more queued jobs that can share ``leader``'s pack, *newest* first.

    Newest first because the queue delivers oldest first: the messages other workers take next are then
    for jobs still queued, so they start packs of their own at once instead of skipping through messages
    of jobs this pack already holds (measured: oldest-first left the second worker idle for a whole pack).
    Compatible means same variant, device, steps and log interval (a pack never mixes them). Postgres
    skips rows another worker is claiming (``FOR UPDATE SKIP LOCKED``); SQLite's BEGIN IMMEDIATE already
    serialises claims.
    """
    if limit <= 0:
        return []
    now = utcnow()
    with write_session(url) as session:
        candidates = (
            select(Job.id)
            .where(
                Job.state == JobState.QUEUED,
                Job.variant == leader.variant,
                Job.device == leader.device,
                Job.steps == leader.steps,
                Job.log_every == leader.log_every,
                Job.attempts_used < max_attempts,
                Job.id != leader.job_id,
            )
            .order_by(Job.created_at.desc(), Job.position.desc())
            .limit(limit)
        )
        if session.get_bind().dialect.name == "postgresql":
            candidates = candidates.with_for_update(skip_locked=True)
        ids = list(session.scalars(candidates))
        if not ids:
            return []
        rows = session.execute(
            update(Job)
            .where(Job.id.in_(ids), Job.state == JobState.QUEUED)
            .values(**claim_values(now, worker, lease_seconds))
            .returning(Job.id, Job.attempt, Job.seed, Job.lr)
        ).all()
    order = {job_id: index for index, job_id in enumerate(ids)}
    claims = [
        Claim(job_id, attempt, leader.variant, seed, lr, leader.steps, leader.log_every, leader.device)
        for job_id, attempt, seed, lr in rows
    ]
    return sorted(claims, key=lambda claim: order[claim.job_id])


def _renew_members(session: object, claims: Sequence[Claim], lease_seconds: float) -> set[str]:
    """Renew every still-owned member's lease in one statement; return the ids no longer owned.

    One UPDATE for the whole pack, not one per member: the heartbeat runs beside the training loop, in
    the same process, and hundreds of small statements every beat took the GIL from it.
    """
    from sqlalchemy.orm import Session

    assert isinstance(session, Session)
    if not claims:
        return set()
    expires = utcnow() + dt.timedelta(seconds=lease_seconds)
    owned: set[str] = set()
    for start in range(0, len(claims), IDS_PER_STATEMENT):
        chunk = claims[start : start + IDS_PER_STATEMENT]
        owned.update(
            session.scalars(
                update(Job)
                .where(
                    tuple_(Job.id, Job.attempt).in_([(claim.job_id, claim.attempt) for claim in chunk]),
                    Job.state == JobState.RUNNING,
                )
                .values(lease_expires_at=expires)
                .returning(Job.id)
            ).all()
        )
    return {claim.job_id for claim in claims} - owned


def renew_pack(url: str, claims: Sequence[Claim], lease_seconds: float) -> set[str]:
    """Heartbeat for a pack: one transaction; returns the members that were fenced off."""
    with write_session(url) as session:
        return _renew_members(session, claims, lease_seconds)


def record_pack_costs(
    url: str, costs: Mapping[Claim, Sequence[tuple[int, float]]], lease_seconds: float
) -> set[str]:
    """Write every owned member's new costs and renew its lease, in one transaction."""
    with write_session(url) as session:
        lost = _renew_members(session, list(costs), lease_seconds)
        rows = [
            row
            for claim, chunk in costs.items()
            if claim.job_id not in lost
            for row in cost_rows(claim.job_id, claim.attempt, chunk)
        ]
        upsert_cost_rows(session, rows)
        return lost


def finish_pack(url: str, outcomes: Mapping[Claim, Outcome], errors: Mapping[Claim, str]) -> set[str]:
    """Store every member's result (or error) in one transaction; returns the members fenced off."""
    now = utcnow()
    with write_session(url) as session:
        lost = _renew_members(session, [*outcomes, *errors], lease_seconds=0)
        owned = [(claim, outcome) for claim, outcome in outcomes.items() if claim.job_id not in lost]
        write_results_in_transaction(session, [(claim.job_id, claim.attempt, out) for claim, out in owned])
        for claim, error in errors.items():
            if claim.job_id not in lost:
                session.execute(
                    update(Job)
                    .where(Job.id == claim.job_id, Job.attempt == claim.attempt)
                    .values(
                        state=JobState.FAILED, finished_at=now, lease_expires_at=None, error=clip_error(error)
                    )
                )
        return lost
