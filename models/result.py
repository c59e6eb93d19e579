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
    stopped_at_step: int | None = None
    """The logged step at which an early-stopping rule (``models.stopping``) held, ``None`` if none did:
    the run then trained ``stopped_at_step + 1`` steps and equals a run with that many steps."""
    stop_reason: str | None = None
    """Why it stopped: ``cost_below`` or ``solved`` (``None`` when it ran all its steps)."""

    def steps_trained(self, steps: int) -> int:
        """How many steps it trained, of the ``steps`` it was asked for."""
        return steps if self.stopped_at_step is None else self.stopped_at_step + 1
