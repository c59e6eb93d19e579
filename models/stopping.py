"""Early stopping (issue 12 §3): when a job may stop, decided the same way by every engine.

A rule is checked at **logged steps only** (``step % log_every == 0``), on two numbers of that step:

* ``below``: the *logged cost* of step ``s`` (the float32 value that is stored, computed from step
  ``s``'s forward pass before its update) is below the threshold. The comparison is exact: the float32
  cost widened to a double against the threshold as given (a float32 comparison would round 0.05 first).
* ``when_solved``: the hypothesis of that same forward pass (the one whose cost is logged) labels all
  four XOR inputs right, by the seed's own label rule ``hypothesis > 0.5``.

A job whose rule holds at logged step ``s`` still finishes step ``s`` (its update) and then ends as the
seed's loop ends: a last forward pass under ``no_grad`` gives the final hypothesis, the labels and the
accuracy. That is exactly the seed's loop with ``steps = s + 1``, so its costs, hypothesis, labels,
accuracy and trained cost equal that run's bit for bit. When both conditions hold at once the reason
recorded is ``cost_below`` (checked first). A member that failed (a NaN hypothesis: its solo run raises)
never stops: it fails as it would have.

This module imports no torch (``models.engine`` names the rule in its interface); the tensors come in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import Tensor

COST_BELOW = "cost_below"
SOLVED = "solved"
STOP_REASONS = (COST_BELOW, SOLVED)
"""``stop_reason`` of a stopped job: the stored and shown values."""


@dataclass(frozen=True)
class StopRule:
    """When a job stops early; ``StopRule()`` never stops (the seed's full run)."""

    below: float | None = None
    when_solved: bool = False

    @property
    def active(self) -> bool:
        return self.below is not None or self.when_solved

    def reason(self, cost: float, hypothesis: Tensor, y: Tensor) -> str | None:
        """Why one job stops at this logged step (``None``: it goes on); ``cost`` as logged (the
        float32 value as a Python float), ``hypothesis`` and ``y`` the forward pass's (4, 1) tensors."""
        if self.below is not None and cost < self.below:
            return COST_BELOW
        if self.when_solved and bool(((hypothesis.detach() > 0.5).float() == y).all()):
            return SOLVED
        return None

    def reasons(self, costs: Tensor, hypothesis: Tensor, y: Tensor, alive: Tensor) -> tuple[Tensor, Tensor]:
        """For J jobs at one logged step: the ``(J,)`` masks (cost below, solved and not below).

        ``costs`` (J,) float32 as logged, ``hypothesis`` (4, J) of this step's forward pass, ``y``
        (4, 1), ``alive`` (J,) the members that have not failed (only those may stop).
        """
        import torch

        jobs = costs.shape[0]
        below = torch.zeros(jobs, dtype=torch.bool, device=costs.device)
        solved = torch.zeros(jobs, dtype=torch.bool, device=costs.device)
        if self.below is not None:
            # float64: the float32 cost widens exactly; the threshold stays the double it was given.
            below = (costs.double() < self.below) & alive
        if self.when_solved:
            solved = ((hypothesis > 0.5).float() == y).all(0) & alive & ~below
        return below, solved


NO_STOP = StopRule()


def rule_of(stop_below: float | None, stop_when_solved: bool) -> StopRule:
    """The rule of a sweep's (or a job's) two fields."""
    return StopRule(stop_below, stop_when_solved)
