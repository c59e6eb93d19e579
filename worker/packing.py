"""Which engine trains a worker's jobs, and training claimed jobs with it: solo and packed alike.

The engine of a pack of ``variant`` on ``device`` is the first of ``models.engines.packing_engines``
whose ``self_check`` passes in this process (checked once per process and kept); ``SOLO`` where none
does, or where packing is off (``XORJOBS_PACK_SIZE=1``). On the CPU only engines that promise solo's
numbers pack (native, then exact packed), and each proves it on this CPU first: a check that fails
means solo runs, never different numbers. On CUDA there is no bit-exact reference to keep (a GPU rounds
differently from the CPU whether packed or not), so CUDA jobs are packed whenever the worker has CUDA.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from xorjobs.errors import LeaseLost
from xorjobs.settings import Settings
from xorjobs.store.claims import Claim
from xorjobs.store.packs import finish_pack, record_pack_costs
from xorjobs.store.results import Outcome
from xorjobs.store.retry import is_transient_store_error
from xorjobs.worker import faults
from xorjobs.worker.heartbeat import Heartbeat
from xorjobs.worker.outcomes import member_failure_text, outcome_of
from xorjobs.worker.store_outage import RESULT_DEADLINE_SECONDS, store_call

if TYPE_CHECKING:  # torch stays out of processes that only route tasks (Flower, the API)
    from xorjobs.models.engine import Engine
    from xorjobs.models.result import TrainResult

log = logging.getLogger(__name__)
_chosen: dict[tuple[str, str], Engine] = {}
"""(variant, device) -> the engine its packs train with in this process (the self-checks' answer)."""
SELF_CHECK_STEPS = 100


def check_all_variants() -> None:
    """Choose the CPU engine of every variant now (a worker's main process, before it forks its pool,
    so each training child inherits the self-checks' answers instead of paying seconds for them on its
    first job)."""
    from xorjobs.models import VARIANTS

    for variant in VARIANTS:
        pack_engine(variant, "cpu")


def engine_for(variant: str, device: str, pack_size: int) -> Engine:
    """The engine this worker trains ``variant`` on ``device`` with: solo when packing is off."""
    from xorjobs.models.engines import SOLO

    return SOLO if pack_size <= 1 else pack_engine(variant, device)


def pack_engine(variant: str, device: str) -> Engine:
    """The first packing engine whose self-check passes for ``variant`` here; ``SOLO`` if none does."""
    key = (variant, device)
    if key not in _chosen:
        _chosen[key] = _choose(variant, device)
    return _chosen[key]


def _choose(variant: str, device: str) -> Engine:
    from xorjobs.models.engines import SOLO, packing_engines

    refused: list[str] = []
    for engine in packing_engines(device):
        # 100 steps, every one logged: a different kernel path shows in the first steps already.
        if engine.self_check(variant, device, SELF_CHECK_STEPS):
            passed_over = f" (self-check refused {', '.join(refused)})" if refused else ""
            log.info("engine for %s on %s: %s%s; packing on", variant, device, engine.name, passed_over)
            return engine
        refused.append(engine.name)
    why = "NOT bit-identical to solo on this CPU" if device == "cpu" else f"no {device} here"
    log.warning("packing self-check for %s: %s (%s refused); training solo", variant, why, ", ".join(refused))
    return SOLO


def train_claims(claims: Sequence[Claim], engine: Engine, url: str, settings: Settings) -> tuple[int, int]:
    """Train the claimed jobs (one, or a pack) with ``engine`` and store every result and member
    failure in one fenced transaction; returns (succeeded, failed).

    Progress (and the lease) is written as the engine reports it; costs the store cannot take now are
    kept for the next write. Raises LeaseLost when every job was fenced off mid-way, StoreOutage when
    the results could not be stored within ``RESULT_DEADLINE_SECONDS`` (the runner then hands the jobs
    back), and any other error of the whole run (the runner fails every job with it).
    """
    import torch  # here, not at import time: CUDA is initialised only in the process that trains

    from xorjobs.models.engine import PackedMemberError
    from xorjobs.models.stopping import StopRule

    leader = claims[0]
    if leader.device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("this job needs CUDA and this worker has none; it never runs on the CPU instead")
    written = [0] * len(claims)
    # Costs the store could not take yet (a transient error): sent with the next write or the result.
    pending: list[list[tuple[int, float]]] = [[] for _ in claims]
    with Heartbeat(url, claims, settings.lease_seconds, settings.heartbeat_seconds) as beat:

        def on_progress(chunks: list[list[tuple[int, float]]]) -> None:
            beat.check()
            for index, chunk in enumerate(chunks):
                pending[index] += chunk
            owned = {
                claim: pending[index] for index, claim in enumerate(claims) if claim.job_id not in beat.lost
            }
            try:
                beat.lost |= record_pack_costs(url, owned, settings.lease_seconds)
            except Exception as error:
                if not is_transient_store_error(error):
                    raise
                log.warning(
                    "%d job(s) led by %s: progress not stored now (store unavailable); kept",
                    len(claims),
                    leader.job_id,
                )
                return
            for index in range(len(claims)):
                written[index] += len(pending[index])
                pending[index] = []
            beat.check()

        errors: dict[Claim, str] = {}
        results: list[TrainResult | None]
        try:
            results = list(
                engine.train(
                    leader.variant,
                    [claim.seed for claim in claims],
                    [claim.lr for claim in claims],
                    steps=leader.steps,
                    log_every=leader.log_every,
                    device=leader.device,
                    on_progress=on_progress,
                    progress_interval_s=settings.progress_seconds,
                    stop=StopRule(leader.stop_below, leader.stop_when_solved),
                )
            )
        except PackedMemberError as failure:
            results = list(failure.results)
            errors = {
                claims[index]: member_failure_text(engine, error) for index, error in failure.errors.items()
            }
        beat.check()
    outcomes: dict[Claim, Outcome] = {}
    for index, (claim, result) in enumerate(zip(claims, results, strict=True)):
        if result is None:
            continue
        outcomes[claim] = outcome_of(
            result, written[index], torch.__version__, claim.variant, engine.name, claim.steps
        )
    for claim in claims:
        faults.at("before_final_commit", claim)
    lost = store_call(
        lambda: finish_pack(url, outcomes, errors),
        f"{len(claims)} job(s) led by {leader.job_id}: store results",
        RESULT_DEADLINE_SECONDS,
    )
    if lost:
        log.warning("%d job(s): %d were fenced off; their results were not stored", len(claims), len(lost))
    if len(lost) == len(claims):
        # Also what a retry finds after a first try that committed but lost its answer: either way
        # the store holds a final state for the jobs.
        raise LeaseLost("every claimed job was fenced off")
    for claim, text in errors.items():
        if claim.job_id not in lost:
            log.error("job %s attempt %d failed: %s", claim.job_id, claim.attempt, text)
            break  # the first is enough for the log; every one is stored with its job
    failed = sum(1 for claim in errors if claim.job_id not in lost)
    return len(claims) - len(lost) - failed, failed
