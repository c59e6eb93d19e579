"""Claim → train → persist: what one delivery of a job does, whatever the pool or transport.

Every write is fenced on the claimed attempt, so this function is safe to run twice for one job (a
duplicate delivery finds nothing to claim; a fenced-off attempt stops at its next write).
"""

from __future__ import annotations

import logging
import traceback
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from xorjobs.errors import LeaseLost
from xorjobs.settings import Settings
from xorjobs.store.claims import Claim, claim_job
from xorjobs.store.costs import record_costs
from xorjobs.store.packs import claim_companions
from xorjobs.store.peeks import peek_job
from xorjobs.store.results import Outcome, fail_job, finish_job
from xorjobs.worker.faults import fault_point
from xorjobs.worker.liveness import holder_is_dead
from xorjobs.worker.packing import packing_available

if TYPE_CHECKING:  # torch stays out of this module's imports (the Flower image has none)
    from xorjobs.models.result import TrainResult

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
    SKIPPED = "skipped"  # nothing to claim: done, running elsewhere, cancelled or out of attempts
    FENCED = "fenced"  # this attempt lost the job mid-way; its later writes were refused


@dataclass
class _ProgressWriter:
    """Writes each new chunk of costs (and renews the lease) in one fenced transaction."""

    url: str
    claim: Claim
    lease_seconds: float
    written: int = 0

    def __call__(self, chunk: list[tuple[int, float]]) -> None:
        record_costs(self.url, self.claim.job_id, self.claim.attempt, chunk, self.lease_seconds)
        self.written += len(chunk)


def run_job(job_id: str, worker_name: str, settings: Settings) -> RunOutcome:
    """Run one job to a terminal state (or find it needs nothing). Raises UnknownJob for a foreign id."""
    url = settings.resolved_database_url
    # The packing self-check (a few seconds, once per process and variant) runs before the claim, so
    # it never eats into a claimed job's lease.
    peek = peek_job(url, job_id)
    if peek is not None and not peek.claimable(holder_is_dead):
        # The common case for messages of jobs a pack already did: skip without taking the write lock.
        log.info("job %s: nothing to claim (%s)", job_id, peek.state)
        return RunOutcome.SKIPPED
    pack = settings.pack_size > 1 and peek is not None and packing_available(peek.variant, peek.device)
    claim = claim_job(
        url, job_id, worker_name, settings.lease_seconds, settings.max_attempts, holder_is_dead=holder_is_dead
    )
    if claim is None:
        log.info("job %s: nothing to claim (duplicate delivery, finished, or cancelled)", job_id)
        return RunOutcome.SKIPPED
    claims = [claim]
    if pack:
        claims += claim_companions(
            url, claim, worker_name, settings.lease_seconds, settings.max_attempts, settings.pack_size - 1
        )
    for member in claims:  # a poison job kills its worker whether it leads a pack or joins one
        fault_point("after_claim", member.seed, member.attempt)
    ACTIVE_CLAIMS.update((member.job_id, member.attempt) for member in claims)
    try:
        if len(claims) > 1 or (pack and claim.variant in PACK_OF_ONE_IS_FASTER):
            return _train_pack_and_report(claims, url, settings)
        return _train_and_persist(claim, url, settings)
    finally:
        ACTIVE_CLAIMS.difference_update((member.job_id, member.attempt) for member in claims)


def _train_pack_and_report(claims: list[Claim], url: str, settings: Settings) -> RunOutcome:
    from xorjobs.worker.packing import train_pack

    try:
        succeeded, failed = train_pack(claims, url, settings)
    except LeaseLost as lost:
        log.warning("pack led by %s stopped: %s", claims[0].job_id, lost)
        return RunOutcome.FENCED
    except Exception as error:
        text = _describe_failure(error)
        log.error("pack led by %s failed: %s", claims[0].job_id, text)
        outcomes = [fail_job(url, claim.job_id, claim.attempt, text) for claim in claims]
        return RunOutcome.FAILED if any(outcomes) else RunOutcome.FENCED
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
        text = _describe_failure(error)
        log.error("job %s attempt %d failed: %s", job_id, claim.attempt, text)
        return RunOutcome.FAILED if fail_job(url, job_id, claim.attempt, text) else RunOutcome.FENCED
    fault_point("before_final_commit", claim.seed, claim.attempt)
    try:
        finish_job(url, job_id, claim.attempt, outcome)
    except LeaseLost:
        return RunOutcome.FENCED
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
    return outcome_of(result, writer.written, torch.__version__)


def outcome_of(result: TrainResult, written: int, torch_version: str) -> Outcome:
    """What the store writes for a finished run: the costs not yet written, and the result."""
    return Outcome(
        unwritten_costs=result.costs[written:],
        final_cost=result.costs[-1][1] if result.costs else None,
        hypothesis=result.hypothesis,
        predicted=result.predicted,
        accuracy=result.accuracy,
        device_name=result.device_name,
        cpu_capability=result.cpu_capability,
        torch_version=torch_version,
    )


def _describe_failure(error: BaseException) -> str:
    name = type(error).__name__
    if name == "SoftTimeLimitExceeded":
        return "time_limit: the job ran past XORJOBS_JOB_TIME_LIMIT_SECONDS"
    lines = traceback.format_exception(error)
    return f"{name}: {error}\n" + "".join(lines[-6:])
