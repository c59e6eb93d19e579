"""Claim → train → persist: what one delivery of a job does, whatever the pool, transport or engine.

One path for every engine (``models.engine.Engine``): the job is claimed, with companions when its
engine packs (``worker.packing`` chooses the engine), then ``worker.packing.train_claims`` trains them
and stores the results; one job trained solo is a pack of one.

Every write is fenced on the claimed attempt, so this function is safe to run twice for one job (a
duplicate delivery finds nothing to claim; a fenced-off attempt stops at its next write). Store errors
are not the job's (``worker/store_outage.py``): they are retried, and when the store stays away the
job is handed back and ``StoreOutage`` tells the task to reject the message back onto the queue.
"""

from __future__ import annotations

import logging
from enum import StrEnum
from typing import TYPE_CHECKING

from xorjobs.errors import LeaseLost, UnknownJob
from xorjobs.settings import Settings
from xorjobs.store.claims import Claim, claim_job
from xorjobs.store.packs import claim_companions
from xorjobs.store.peeks import peek_job
from xorjobs.store.recovery import hand_back_job
from xorjobs.store.results import fail_job
from xorjobs.worker import faults
from xorjobs.worker.liveness import holder_is_dead
from xorjobs.worker.outcomes import describe_failure, outcome_of
from xorjobs.worker.packing import engine_for, train_claims
from xorjobs.worker.store_match import DELETED, WrongStore, is_foreign, wrong_store_text
from xorjobs.worker.store_outage import (
    BEFORE_CLAIM_DEADLINE_SECONDS,
    HAND_BACK_DEADLINE_SECONDS,
    RESULT_DEADLINE_SECONDS,
    StoreOutage,
    is_store_outage,
    store_call,
)

if TYPE_CHECKING:  # torch stays out of this module's imports
    from xorjobs.models.engine import Engine

log = logging.getLogger(__name__)


# Variants whose pack engines beat ``models.train`` even for a single job (same numbers, bit for bit).
# One 10001-step job, CPU seconds (wall), 2-core AMD EPYC under load 1.5-3, best of 3:
#   nn         solo 2.47 (6.6)   exact 0.50 (0.76)   native 0.019 (0.036)
#   wide_deep  solo 3.01 (3.2)   exact 2.17 (2.36)   native 0.33 (0.33)
# (a 2-core AVX-512 Xeon gave exact nn 0.76 s vs solo 4.28 s, wide_deep 3.25 s vs 6.20 s). The backprop
# engine (exact; native does not train it) runs eagerly and loses alone (3.5 s vs 2.3 s), so a lone
# backprop job trains solo.
PACK_OF_ONE_IS_FASTER = frozenset({"nn", "wide_deep"})

ACTIVE_CLAIMS: set[tuple[str, int]] = set()
"""(job id, attempt) of the jobs this process is training now, so a clean stop can hand them back."""


class RunOutcome(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"  # nothing to claim: done, running elsewhere, cancelled, deleted, out of attempts
    FENCED = "fenced"  # this attempt lost the job mid-way; its later writes were refused
    HANDED_BACK = "handed_back"  # the store failed under the job; it is queued again, attempt forgiven


def run_job(job_id: str, worker_name: str, settings: Settings, store: str | None = None) -> RunOutcome:
    """Run one job to a terminal state (or find it needs nothing).

    ``store`` is the fingerprint of the store that published the message (None for old messages).
    Raises ``StoreOutage`` when the store stayed unavailable (the message goes back to the queue) and
    ``WrongStore`` when the message comes from another store.
    """
    url = settings.resolved_database_url
    peek = store_call(lambda: peek_job(url, job_id), f"job {job_id}: read", BEFORE_CLAIM_DEADLINE_SECONDS)
    if peek is None:
        return _not_in_store(url, job_id, store)
    if not peek.claimable(holder_is_dead):
        # The common case for messages of jobs a pack already did: skip without taking the write lock.
        log.info("job %s: nothing to claim (%s)", job_id, peek.state)
        return RunOutcome.SKIPPED
    # The engines' self-checks (a few seconds, once per process and variant) run before the claim, so
    # they never eat into a claimed job's lease.
    engine = engine_for(peek.variant, peek.device, settings.pack_size)
    try:
        claim = store_call(
            lambda: claim_job(
                url,
                job_id,
                worker_name,
                settings.lease_seconds,
                settings.max_attempts,
                holder_is_dead=holder_is_dead,
            ),
            f"job {job_id}: claim",
            BEFORE_CLAIM_DEADLINE_SECONDS,
        )
    except UnknownJob:  # deleted between the read and the claim
        return _not_in_store(url, job_id, store)
    if claim is None:
        log.info("job %s: nothing to claim (duplicate delivery, finished, or cancelled)", job_id)
        return RunOutcome.SKIPPED
    claims = [claim]
    if engine.packs:
        claims += _companions(url, claim, worker_name, settings)
    for member in claims:  # a poison job kills its worker whether it leads a pack or joins one
        faults.at("after_claim", member)
    ACTIVE_CLAIMS.update((member.job_id, member.attempt) for member in claims)
    try:
        if len(claims) == 1 and claim.variant not in PACK_OF_ONE_IS_FASTER:
            engine = _solo()
        return _train_and_report(claims, engine, url, settings)
    finally:
        ACTIVE_CLAIMS.difference_update((member.job_id, member.attempt) for member in claims)


def _not_in_store(url: str, job_id: str, store: str | None) -> RunOutcome:
    if is_foreign(url, store):
        raise WrongStore(wrong_store_text(url, store))
    DELETED.dropped(job_id)
    return RunOutcome.SKIPPED


def _companions(url: str, leader: Claim, worker_name: str, settings: Settings) -> list[Claim]:
    try:
        return store_call(
            lambda: claim_companions(
                url,
                leader,
                worker_name,
                settings.lease_seconds,
                settings.max_attempts,
                settings.pack_size - 1,
            ),
            f"pack led by {leader.job_id}: claim",
            BEFORE_CLAIM_DEADLINE_SECONDS,
        )
    except StoreOutage as outage:
        _hand_back([leader], url, outage)
        raise


def _hand_back(claims: list[Claim], url: str, error: BaseException) -> RunOutcome:
    """The store failed under these claimed jobs: queue them again with the attempt forgiven.

    Returns HANDED_BACK when the store took that (the message may then be acked: the store recorded
    what happened and the relay sends a new one); raises StoreOutage when it did not (the message is
    rejected back onto the queue, and the lease, once expired, lets a later delivery take the job).
    """
    log.warning("%d job(s) led by %s handed back: %s", len(claims), claims[0].job_id, _one_line(error))

    def hand_back_all() -> int:
        return sum(hand_back_job(url, claim.job_id, claim.attempt) for claim in claims)

    try:
        store_call(hand_back_all, f"hand back {claims[0].job_id}", HAND_BACK_DEADLINE_SECONDS)
    except StoreOutage as outage:
        raise StoreOutage(f"job {claims[0].job_id}: {error}") from outage
    return RunOutcome.HANDED_BACK


def _fail(claims: list[Claim], url: str, text: str) -> bool:
    """Store the job's own failure (retried through store errors); True if any member was still owned."""

    def fail_all() -> list[bool]:
        return [fail_job(url, claim.job_id, claim.attempt, text) for claim in claims]

    # Past the deadline StoreOutage goes up: the job stays running, its lease runs out, and a later
    # attempt fails it again once the store is back (or its attempts run out).
    return any(store_call(fail_all, f"job {claims[0].job_id}: store failure", RESULT_DEADLINE_SECONDS))


def _solo() -> Engine:
    from xorjobs.models.engines import SOLO

    return SOLO


def _train_and_report(claims: list[Claim], engine: Engine, url: str, settings: Settings) -> RunOutcome:
    """Train and persist the claimed jobs; a store outage hands them back, a failure of the whole run
    fails every one still owned."""
    leader = claims[0]
    try:
        succeeded, failed = train_claims(claims, engine, url, settings)
    except LeaseLost as lost:
        log.warning(
            "%d job(s) led by %s attempt %d stopped: %s", len(claims), leader.job_id, leader.attempt, lost
        )
        return RunOutcome.FENCED
    except Exception as error:
        if is_store_outage(error):
            return _hand_back(claims, url, error)
        text = describe_failure(error)
        log.error(
            "%d job(s) led by %s attempt %d failed: %s", len(claims), leader.job_id, leader.attempt, text
        )
        return RunOutcome.FAILED if _fail(claims, url, text) else RunOutcome.FENCED
    log.info(
        "%d %s job(s) on the %s engine: %d succeeded, %d failed",
        len(claims),
        leader.variant,
        engine.name,
        succeeded,
        failed,
    )
    return RunOutcome.SUCCEEDED if failed == 0 else RunOutcome.FAILED


def _one_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


__all__ = ["ACTIVE_CLAIMS", "RunOutcome", "outcome_of", "run_job"]
