"""Training a pack: up to XORJOBS_PACK_SIZE compatible queued jobs as one vectorised run.

On the CPU the packed trainer (``models.packed``) is bit-identical to solo training wherever its
start-up measurement of the BLAS kernels holds; a worker checks that on its own CPU before it packs a
variant, and trains solo where the check fails, rather than store different numbers. On CUDA there is
no bit-exact reference to keep (a GPU rounds differently from the CPU whether packed or not), so CUDA
jobs are packed whenever the worker has CUDA.
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
from xorjobs.worker.outcomes import outcome_of
from xorjobs.worker.store_outage import RESULT_DEADLINE_SECONDS, store_call

if TYPE_CHECKING:  # torch stays out of processes that only route tasks (Flower, the API)
    from xorjobs.models.result import TrainResult

log = logging.getLogger(__name__)
_exact: dict[str, bool] = {}
SELF_CHECK_STEPS = 100


def check_all_variants() -> None:
    """Run the self-check of every variant now (a worker's main process, before it forks its pool, so
    each training child inherits the answers instead of paying seconds for them on its first job)."""
    from xorjobs.models import VARIANTS

    for variant in VARIANTS:
        packing_available(variant, "cpu")


def packing_available(variant: str, device: str) -> bool:
    """Whether packed training of ``variant`` equals solo training here (checked once per process)."""
    if device != "cpu":
        return device == "cuda" and _has_cuda()
    if variant not in _exact:
        from xorjobs.models.packed import packing_is_exact

        # 100 steps, every one logged: a different kernel path shows in the first steps already.
        _exact[variant] = packing_is_exact(variant, steps=SELF_CHECK_STEPS)
        if _exact[variant]:
            log.info("packing self-check for %s: bit-identical to solo on this CPU; packing on", variant)
        else:
            log.warning("packing self-check for %s: NOT bit-identical on this CPU; training solo", variant)
    return _exact[variant]


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def train_pack(claims: Sequence[Claim], url: str, settings: Settings) -> tuple[int, int]:
    """Train the claimed jobs together and store every result in bulk; returns (succeeded, failed).

    Raises LeaseLost when every member was fenced off mid-way, and StoreOutage when the results could
    not be stored within ``RESULT_DEADLINE_SECONDS`` (the runner then hands the pack back).
    """
    import torch

    from xorjobs.models.packed import PackedMemberError, train_packed

    leader = claims[0]
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
                    "pack led by %s: progress not stored now (store unavailable); kept", leader.job_id
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
                train_packed(
                    leader.variant,
                    [claim.seed for claim in claims],
                    [claim.lr for claim in claims],
                    steps=leader.steps,
                    log_every=leader.log_every,
                    device=leader.device,
                    on_progress=on_progress,
                    progress_interval_s=settings.progress_seconds,
                )
            )
        except PackedMemberError as failure:
            results = list(failure.results)
            errors = {
                claims[index]: f"{type(error).__name__}: {error}" for index, error in failure.errors.items()
            }
        beat.check()
    outcomes: dict[Claim, Outcome] = {}
    for index, (claim, result) in enumerate(zip(claims, results, strict=True)):
        if result is None:
            continue
        outcomes[claim] = outcome_of(result, written[index], torch.__version__, claim.variant)
    for claim in claims:
        faults.at("before_final_commit", claim)
    lost = store_call(
        lambda: finish_pack(url, outcomes, errors),
        f"pack led by {leader.job_id}: store results",
        RESULT_DEADLINE_SECONDS,
    )
    if lost:
        log.warning(
            "pack of %d: %d member(s) were fenced off; their results were not stored", len(claims), len(lost)
        )
    if len(lost) == len(claims):
        raise LeaseLost("every member of the pack was fenced off")
    failed = sum(1 for claim in errors if claim.job_id not in lost)
    return len(claims) - len(lost) - failed, failed
