"""What a finished training run becomes in the store, for solo and packed training alike.

Its own module so ``worker.runner`` (which picks solo or packed) and ``worker.packing`` (which trains a
pack) both use it without importing each other.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from xorjobs.store.results import Outcome

if TYPE_CHECKING:  # torch stays out of this module's imports (the Flower image has none)
    from xorjobs.models.result import TrainResult


def outcome_of(result: TrainResult, written: int, torch_version: str, variant: str) -> Outcome:
    """What the store writes for a finished run: the costs not yet written, and the result; its final
    cost is the trained model's (``models.trained_cost``), whatever engine trained it."""
    from xorjobs.models.trained_cost import trained_cost  # torch: only in a process that trained

    return Outcome(
        unwritten_costs=result.costs[written:],
        final_cost=trained_cost(variant, result.hypothesis),
        last_logged_cost=result.costs[-1][1] if result.costs else None,
        hypothesis=result.hypothesis,
        predicted=result.predicted,
        accuracy=result.accuracy,
        device_name=result.device_name,
        cpu_capability=result.cpu_capability,
        torch_version=torch_version,
    )
