"""The solo engine: ``models.train``, one job after another, behind the ``Engine`` interface.

It is the reference every other engine is compared with, and what a worker runs when no pack engine
may run a variant here. A job whose run raises (``BCELoss`` on a NaN hypothesis) is reported as the
pack engines report a failed member, so callers handle one kind of member failure.
"""

from __future__ import annotations

from collections.abc import Sequence

from xorjobs.defaults import DEFAULT_LOG_EVERY, DEFAULT_STEPS
from xorjobs.models.engine import CostChunk, PackedMemberError, PackProgressCallback
from xorjobs.models.pack_loop import check_jobs
from xorjobs.models.result import TrainResult
from xorjobs.models.stopping import NO_STOP, StopRule
from xorjobs.models.train import train


class SoloEngine:
    """``models.train`` for each job in turn: the seed's own loop, unchanged."""

    name = "solo"
    packs = False

    def self_check(self, variant: str, device: str, steps: int) -> bool:
        """Always ``True``: solo runs are the reference."""
        return True

    def train(
        self,
        variant: str,
        seeds: Sequence[int],
        lrs: Sequence[float],
        *,
        steps: int = DEFAULT_STEPS,
        log_every: int = DEFAULT_LOG_EVERY,
        device: str = "cpu",
        on_progress: PackProgressCallback | None = None,
        progress_interval_s: float = 2.0,
        stop: StopRule = NO_STOP,
    ) -> list[TrainResult]:
        """Each job as ``models.train`` runs it; ``PackedMemberError.partial_costs`` holds what a failed
        job handed to ``on_progress`` (its run keeps the rest)."""
        check_jobs(variant, seeds, lrs)
        if log_every < 1:
            raise ValueError("log_every must be at least 1")
        results: list[TrainResult | None] = []
        errors: dict[int, RuntimeError] = {}
        partial_costs: dict[int, CostChunk] = {}
        for index, (seed, lr) in enumerate(zip(seeds, lrs, strict=True)):
            relay = _ProgressRelay(index, len(seeds), on_progress)
            try:
                result = train(
                    variant,
                    seed,
                    lr,
                    steps=steps,
                    log_every=log_every,
                    device=device,
                    on_progress=None if on_progress is None else relay,
                    progress_interval_s=progress_interval_s,
                    stop=stop,
                )
            except RuntimeError as error:
                if error is relay.raised:
                    raise  # the caller aborted (lease lost, cancelled): not this job's failure
                errors[index] = error
                partial_costs[index] = relay.delivered
                results.append(None)
                continue
            results.append(result)
        if errors:
            raise PackedMemberError(errors, results, partial_costs)
        return [result for result in results if result is not None]


class _ProgressRelay:
    """One job's progress, handed on as the pack callback's list of per-job chunks."""

    def __init__(self, index: int, jobs: int, on_progress: PackProgressCallback | None) -> None:
        self.index, self.jobs, self.on_progress = index, jobs, on_progress
        self.delivered: CostChunk = []
        self.raised: BaseException | None = None

    def __call__(self, chunk: CostChunk) -> None:
        self.delivered.extend(chunk)
        chunks: list[CostChunk] = [[] for _ in range(self.jobs)]
        chunks[self.index] = chunk
        try:
            if self.on_progress is not None:
                self.on_progress(chunks)
        except BaseException as error:
            self.raised = error
            raise
