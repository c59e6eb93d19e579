"""What one training run produces, as plain Python values (no tensors leave ``models``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TrainResult:
    """The record of one finished run, computed exactly as the seed scripts compute it.

    ``costs`` holds ``(step, cost)`` for every step with ``step % log_every == 0``; the cost is the one
    computed *before* that step's update, as the seed prints it. ``hypothesis`` is the model's output
    for the four XOR inputs after training (under ``no_grad``), ``predicted`` its 0/1 labels and
    ``accuracy`` the share of labels that match.
    """

    costs: list[tuple[int, float]]
    hypothesis: list[float]
    predicted: list[float]
    accuracy: float
    device_name: str = ""
    cpu_capability: str = ""
