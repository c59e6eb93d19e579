"""What every training engine offers: one interface for solo runs, packed runs and any engine to come.

An engine trains a list of jobs of one variant (job ``i``: ``seeds[i]``, ``lrs[i]``) and returns one
``TrainResult`` per job. The engines themselves live one per module (``models.solo``,
``models.packed_exact``, ``models.packed_batched``) and are listed in ``models.engines``, which is where
a caller picks one; a new engine is a new module implementing ``Engine`` and one line there.

This module imports no torch, so the interface can be named in type hints anywhere.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from xorjobs.defaults import DEFAULT_LOG_EVERY, DEFAULT_STEPS
from xorjobs.models.result import TrainResult
from xorjobs.models.stopping import NO_STOP, StopRule

CostChunk = list[tuple[int, float]]
PackProgressCallback = Callable[[list[CostChunk]], None]
"""Gets, per job, the ``(step, cost)`` pairs logged since its last call (empty for a job with nothing new)."""


class PackedMemberError(RuntimeError):
    """Some members failed the way their solo run would have raised; the others finished normally.

    A solo ``nn``/``wide_deep`` run raises from ``BCELoss`` ("all elements of input should be between 0
    and 1") at the first step whose hypothesis holds a NaN. A packed member in that state keeps being
    computed (harmlessly, its numbers stay its own) and is reported here at the end: ``errors`` maps its
    index to the exception its solo run raises; ``results`` holds the other members' results (``None``
    for a failed one). Its costs up to the failure are in ``partial_costs``.
    """

    def __init__(
        self,
        errors: dict[int, RuntimeError],
        results: list[TrainResult | None],
        partial_costs: dict[int, CostChunk],
    ) -> None:
        first = min(errors)
        super().__init__(f"{len(errors)} packed member(s) failed, first #{first}: {errors[first]}")
        self.errors = errors
        self.results = results
        self.partial_costs = partial_costs


class Engine(Protocol):
    """A way to train jobs: solo ``models.train`` runs, a bit-exact CPU pack, a batched CUDA pack, ..."""

    @property
    def name(self) -> str:
        """What logs and job records call it: ``solo``, ``exact``, ``batched``."""
        ...

    @property
    def packs(self) -> bool:
        """Whether it trains many jobs in one run (so a caller gathers companions for it)."""
        ...

    def self_check(self, variant: str, device: str, steps: int) -> bool:
        """Whether its results for ``variant`` on ``device`` may be stored on this machine.

        An engine that promises solo's numbers compares a few jobs with solo ``models.train`` runs bit
        for bit (seconds: callers keep the answer for the process); one that makes no such promise only
        checks that it can run there.
        """
        ...

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
        """Train every job; one result per job, in order (``[]`` for no jobs).

        ``stop`` (``models.stopping``) ends each job after the first logged step where it holds; the
        job's result is then a run with ``steps = that step + 1``, bit for bit where the engine promises
        solo's numbers, and a pack engine takes finished members out so the rest trains on fewer jobs.

        ``on_progress`` may raise to abort (lease lost, cancelled): that exception propagates unchanged.
        A member that fails the way its solo run raises is reported by ``PackedMemberError`` after the
        others finish; any other exception means no member has a result. Bad arguments (unknown variant,
        as many seeds as lrs, ``log_every`` >= 1, a device the engine cannot use) raise ``ValueError``
        before any training.
        """
        ...
