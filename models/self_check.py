"""Start-up self-check: does an engine reproduce solo ``models.train`` runs bit for bit on this machine?

An exact engine's paths were measured on some CPUs; this one's kernels may differ, so a worker asks
once per process and variant before it stores packed numbers. The check is the same for every engine
that promises solo's numbers (``ExactPackedEngine``, a native one later): train a few awkward jobs with
the engine and solo, and compare every number by its bits.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from xorjobs.models.engine import PackedMemberError
from xorjobs.models.result import TrainResult
from xorjobs.models.train import train

if TYPE_CHECKING:
    from xorjobs.models.engine import Engine


def _bits(value: float) -> bytes:
    return struct.pack("<d", value)


def same_result(a: TrainResult, b: TrainResult) -> bool:
    """Bit-for-bit equality of two results' numbers (NaNs compared by their bits too)."""
    if len(a.costs) != len(b.costs) or len(a.hypothesis) != len(b.hypothesis):
        return False
    for (sa, ca), (sb, cb) in zip(a.costs, b.costs, strict=True):
        if sa != sb or _bits(ca) != _bits(cb):
            return False
    return (
        all(_bits(p) == _bits(q) for p, q in zip(a.hypothesis, b.hypothesis, strict=True))
        and a.predicted == b.predicted
        and _bits(a.accuracy) == _bits(b.accuracy)
    )


# Mixed seeds and learning rates, including a run that saturates/diverges (lr 1000): enough to exercise
# the vector and scalar sigmoid paths, both MKL orders and the fused SGD update within a few hundred
# steps. Logging every step compares every cost.
SELF_CHECK_JOBS: tuple[tuple[int, float], ...] = (
    (0, 0.1),
    (777, 1.0),
    (12345, 5.0),
    (3, 1000.0),
    (2**40, 0.01),
)


def matches_solo(engine: Engine, variant: str, steps: int) -> bool:
    """Whether ``engine`` trains ``SELF_CHECK_JOBS`` as solo runs do, bit for bit, on the CPU.

    Packs the jobs (mixed seeds/lrs, one diverging) for ``steps`` steps, logging every step, and
    compares every cost, the final hypothesis, the labels and the accuracy with solo runs. ``False`` on
    any difference.
    """
    seeds = [seed for seed, _ in SELF_CHECK_JOBS]
    lrs = [lr for _, lr in SELF_CHECK_JOBS]
    try:
        packed = engine.train(variant, seeds, lrs, steps=steps, log_every=1)
    except PackedMemberError:
        return False
    for result, seed, lr in zip(packed, seeds, lrs, strict=True):
        if not same_result(result, train(variant, seed, lr, steps=steps, log_every=1)):
            return False
    return True
