"""Claim → train → persist: what one delivery of a job does, whatever the pool or transport.

Every write is fenced on the claimed attempt, so this function is safe to run twice for one job (a
duplicate delivery finds nothing to claim; a fenced-off attempt stops at its next write). Store errors
are not the job's (``worker/store_outage.py``): they are retried, and when the store stays away the
job is handed back and ``StoreOutage`` tells the task to reject the message back onto the queue.
"""

from __future__ import annotations

import logging
import traceback
from dataclasses import dataclass, field
from enum import StrEnum

from xorjobs.errors import LeaseLost, UnknownJob
from xorjobs.settings import Settings
from xorjobs.store.claims import Claim, claim_job
from xorjobs.store.costs import record_costs
from xorjobs.store.packs import claim_companions
from xorjobs.store.peeks import peek_job
from xorjobs.store.recovery import hand_back_job
from xorjobs.store.results import Outcome, fail_job, finish_job
from xorjobs.store.retry import is_transient_store_error
from xorjobs.worker import faults
from xorjobs.worker.liveness import holder_is_dead
from xorjobs.worker.outcomes import outcome_of
from xorjobs.worker.packing import packing_available, train_pack
from xorjobs.worker.store_match import DELETED, WrongStore, is_foreign, wrong_store_text
from xorjobs.worker.store_outage import (
    BEFORE_CLAIM_DEADLINE_SECONDS,
    HAND_BACK_DEADLINE_SECONDS,
    RESULT_DEADLINE_SECONDS,
    StoreOutage,
    is_store_outage,
    store_call,
)

log = logging.getLogger(__name__)


# Variants whose packed engine beats ``models.train`` even for a single job (same numbers, bit for bit),
# measured on a 2-core AVX-512 Xeon, 10001 steps: nn 0.76 s vs 4.28 s, wide_deep 3.25 s vs 6.20 s. The
# backprop engine runs eagerly and loses alone (3.5 s vs 2.3 s), so a lone backprop job trains solo.
PACK_OF_ONE_IS_FASTER = frozenset({"nn", "wide_deep"})

ACTIVE_CLAIMS: set[tuple[str, int]] = set()
"""(job id, attempt) of the jobs this process is training now, so a clean stop can hand them back."""


class RunOutcome(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"  # nothing to claim: done, running elsewhere, cancelled, deleted, out of attempts
    FENCED = "fenced"  # this attempt lost the job mid-way; its later writes were refused
    HANDED_BACK = "handed_back"  # the store failed under the job; it is queued again, attempt forgiven


@dataclass
class _ProgressWriter:
    """Writes each new chunk of costs (and renews the lease) in one fenced transaction.

    A chunk the store cannot take now (a transient error) is kept and sent with the next one, or with
    the final result: training goes on through a store outage instead of failing the job.
    """

    url: str
    claim: Claim
    lease_seconds: float
    written: int = 0
    pending: list[tuple[int, float]] = field(default_factory=list)

    def __call__(self, chunk: list[tuple[int, float]]) -> None:
        self.pending += chunk
        try:
            record_costs(self.url, self.claim.job_id, self.claim.attempt, self.pending, self.lease_seconds)
        except Exception as error:
            if not is_transient_store_error(error):
                raise
            log.warning(
                "job %s: progress not stored now (store unavailable); kept for the next write",
                self.claim.job_id,
            )
            return
        self.written += len(self.pending)
        self.pending = []


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
    # The packing self-check (a few seconds, once per process and variant) runs before the claim, so
    # it never eats into a claimed job's lease.
    pack = settings.pack_size > 1 and packing_available(peek.variant, peek.device)
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
    if pack:
        claims += _companions(url, claim, worker_name, settings)
    for member in claims:  # a poison job kills its worker whether it leads a pack or joins one
        faults.at("after_claim", member)
    ACTIVE_CLAIMS.update((member.job_id, member.attempt) for member in claims)
    try:
        if len(claims) > 1 or (pack and claim.variant in PACK_OF_ONE_IS_FASTER):
            return _train_pack_and_report(claims, url, settings)
        return _train_and_persist(claim, url, settings)
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


def _train_pack_and_report(claims: list[Claim], url: str, settings: Settings) -> RunOutcome:
    try:
        succeeded, failed = train_pack(claims, url, settings)
    except LeaseLost as lost:
        log.warning("pack led by %s stopped: %s", claims[0].job_id, lost)
        return RunOutcome.FENCED
    except Exception as error:
        if is_store_outage(error):
            return _hand_back(claims, url, error)
        text = _describe_failure(error)
        log.error("pack led by %s failed: %s", claims[0].job_id, text)
        return RunOutcome.FAILED if _fail(claims, url, text) else RunOutcome.FENCED
    log.info("pack of %d %s jobs: %d succeeded, %d failed", len(claims), claims[0].variant, succeeded, failed)
    return RunOutcome.SUCCEEDED if failed == 0 else RunOutcome.FAILED


def _train_and_persist(claim: Claim, url: str, settings: Settings) -> RunOutcome:
    job_id = claim.job_id
    try:
        outcome = _train(claim, url, settings)
    except LeaseLost as lost:
        log.warning("job %s attempt %d stopped: %s", job_id, claim.attempt, lost)
        return RunOutcome.FENCED
    except Exception as error:
        if is_store_outage(error):
            return _hand_back([claim], url, error)
        text = _describe_failure(error)
        log.error("job %s attempt %d failed: %s", job_id, claim.attempt, text)
        return RunOutcome.FAILED if _fail([claim], url, text) else RunOutcome.FENCED
    faults.at("before_final_commit", claim)
    try:
        store_call(
            lambda: finish_job(url, job_id, claim.attempt, outcome),
            f"job {job_id}: store result",
            RESULT_DEADLINE_SECONDS,
        )
    except LeaseLost:
        # Also what a retry finds after a first try that committed but lost its answer: either way
        # the store holds a final state for the job.
        return RunOutcome.FENCED
    except StoreOutage as outage:
        return _hand_back([claim], url, outage)
    return RunOutcome.SUCCEEDED


def _train(claim: Claim, url: str, settings: Settings) -> Outcome:
    import torch  # here, not at import time: CUDA is initialised only in the process that trains

    from xorjobs.models import train
    from xorjobs.worker.heartbeat import Heartbeat

    if claim.device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("this job needs CUDA and this worker has none; it never runs on the CPU instead")
    writer = _ProgressWriter(url, claim, settings.lease_seconds)
    with Heartbeat(url, [claim], settings.lease_seconds, settings.heartbeat_seconds) as beat:

        def on_progress(chunk: list[tuple[int, float]]) -> None:
            beat.check()
            writer(chunk)

        result = train(
            claim.variant,
            claim.seed,
            claim.lr,
            steps=claim.steps,
            log_every=claim.log_every,
            device=claim.device,
            on_progress=on_progress,
            progress_interval_s=settings.progress_seconds,
        )
        beat.check()
    return outcome_of(result, writer.written, torch.__version__, claim.variant)


def _describe_failure(error: BaseException) -> str:
    name = type(error).__name__
    if name == "SoftTimeLimitExceeded":
        return "time_limit: the job ran past XORJOBS_JOB_TIME_LIMIT_SECONDS"
    lines = traceback.format_exception(error)
    return f"{name}: {error}\n" + "".join(lines[-6:])


def _one_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


__all__ = ["ACTIVE_CLAIMS", "RunOutcome", "outcome_of", "run_job"]
