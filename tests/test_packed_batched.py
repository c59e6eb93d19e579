"""The batched packed engine (what CUDA runs), checked here on the CPU, and on CUDA where there is one.

Its maths is plain batched matrix products, so it is not bit-identical to a solo run; it must be the
same training: the same starting weights, and costs that agree closely until chaos sets in. Tolerances
are measured: over these members the first 300 steps agree to within 3.9e-6 relative (nn; 2.6e-7
wide_deep, 1.6e-6 backprop: float32 rounding of other summation orders); 1e-5 leaves no room for a
wrong formula, which is off by far more.
"""

from __future__ import annotations

import math

import pytest
import torch

from xorjobs.defaults import VARIANTS
from xorjobs.models import train
from xorjobs.models.packed import PackedMemberError, train_packed
from xorjobs.models.packed_batched import BatchedEngine

SEEDS = [0, 1, 777, 2**31 - 1, 12345]
LRS = [0.01, 0.1, 1.0, 5.0, 0.5]


def max_relative_difference(a: list[tuple[int, float]], b: list[tuple[int, float]]) -> float:
    assert [step for step, _ in a] == [step for step, _ in b]
    return max(abs(x - y) / max(abs(y), 1e-12) for (_, x), (_, y) in zip(a, b, strict=True))


@pytest.mark.parametrize("variant", VARIANTS)
def test_batched_engine_trains_like_solo_runs(variant: str) -> None:
    packed = train_packed(variant, SEEDS, LRS, steps=300, log_every=1, engine="batched")
    for seed, lr, result in zip(SEEDS, LRS, packed, strict=True):
        solo = train(variant, seed, lr, steps=300, log_every=1)
        assert result.costs[0][1] == pytest.approx(solo.costs[0][1], rel=1e-6), "different starting weights"
        assert max_relative_difference(result.costs, solo.costs) < 1e-5, (seed, lr)
        assert result.hypothesis == pytest.approx(solo.hypothesis, rel=1e-4, abs=1e-6)


@pytest.mark.parametrize("variant", ["nn", "wide_deep"])
def test_batched_engine_reports_a_nan_member_as_the_solo_run_fails(variant: str) -> None:
    """A NaN lr: the solo run raises from BCELoss (on CUDA a device-side assert that would kill the
    process); the batched engine computes the loss without that check and reports the member."""
    with pytest.raises(PackedMemberError) as caught:
        train_packed(variant, [5, 6, 7], [1.0, math.nan, 0.1], steps=200, log_every=10, engine="batched")
    assert set(caught.value.errors) == {1}
    assert "between 0 and 1" in str(caught.value.errors[1])
    others = [result for result in caught.value.results if result is not None]
    assert [len(result.costs) for result in others] == [20, 20]


def test_batched_engine_keeps_a_diverging_backprop_member_as_a_result_with_nan_costs() -> None:
    """The README's CUDA note: backprop's hand-written cost has no input check, so a member that blows up
    (lr 1000) succeeds with NaN costs, as its solo run does, and is not reported as failed."""
    results = train_packed("backprop", [3, 4], [1000.0, 1.0], steps=200, log_every=10, engine="batched")
    assert any(math.isnan(cost) for _, cost in results[0].costs)
    assert not any(math.isnan(cost) for _, cost in results[1].costs)


def test_exact_engine_refuses_other_devices() -> None:
    with pytest.raises(ValueError, match="CPU only"):
        train_packed("nn", [1], [0.1], device="cuda", engine="exact")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (run by scripts/gpu_check.sh)")
@pytest.mark.parametrize("variant", VARIANTS)
def test_cuda_graphs_replay_the_eager_batched_steps(variant: str) -> None:
    """The CUDA-graph replay must compute what the same batched ops compute eagerly on the GPU."""
    graphed = train_packed(variant, SEEDS, LRS, steps=500, log_every=10, device="cuda")
    plain = train_packed(
        variant, SEEDS, LRS, steps=500, log_every=10, device="cuda", engine=BatchedEngine(graphs=False)
    )
    for a, b in zip(graphed, plain, strict=True):
        assert a.costs == b.costs
        assert a.hypothesis == b.hypothesis
        assert a.device_name == torch.cuda.get_device_name()
