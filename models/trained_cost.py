"""The cost of the trained model (issue 12, section 4): what ``final_cost`` reports.

The seed prints the cost at every 100th step, each computed *before* that step's update, so the last
logged cost is never the trained model's (with ``--steps 10`` it is the untrained step-0 cost). The
trained model's cost is the seed's own criterion applied to its final hypothesis, the one the seed
computes its accuracy from (after training, under ``no_grad``): ``BCELoss`` for nn and wide_deep, the
hand-written ``-mean(Y log h + (1 - Y) log(1 - h))`` for backprop. It is exactly the cost the seed's
loop would log at step ``steps`` if it ran one step longer.

It is computed from the hypothesis as stored (float32 values, so the list round-trips exactly), in
float32 on the CPU, for every engine and device alike: the same value anyone recomputes from a job's
record with torch.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from xorjobs.models.backprop import bce_cost
from xorjobs.models.data import xor_data

_CPU = torch.device("cpu")


def trained_cost(variant: str, hypothesis: Sequence[float]) -> float:
    """The seed's criterion of ``hypothesis`` (the four outputs, in the data's order) against XOR's Y."""
    y = _labels()
    with torch.no_grad():
        outputs = torch.tensor(hypothesis, dtype=torch.float32, device=_CPU).reshape(y.shape)
        if variant == "backprop":
            return float(bce_cost(outputs, y).item())
        if not all(0.0 <= value <= 1.0 for value in hypothesis):
            # BCELoss refuses such outputs (a NaN included); training would have failed on them first.
            return math.nan
        # BCELoss()'s own forward, without building the module per call (a pack computes thousands).
        return float(F.binary_cross_entropy(outputs, y, reduction="mean").item())


@functools.cache
def _labels() -> torch.Tensor:
    """XOR's Y, built once per process (never written to: every use only reads it)."""
    return xor_data(_CPU)[1]
