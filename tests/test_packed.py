"""The packed trainer equals solo ``models.train`` bit for bit, member by member (issue 6).

Solo runs dominate the cost of these tests, so most runs are short (a few hundred to 1500 steps, which
is plenty for last-bit differences to show: the runs are chaotic and a wrong rounding anywhere changes
the costs within a few dozen steps) and large packs are compared on a sample of members. Full-length
runs are covered by the seed-script reference files and a few 10001-step solo comparisons.
"""

from __future__ import annotations

import itertools
import math
import struct

import pytest
import torch

import xorjobs.models.packed_exact as packed_exact
from tests.ci import require
from xorjobs.defaults import VARIANTS
from xorjobs.models import TrainResult, train
from xorjobs.models.backprop import initial_params
from xorjobs.models.blas_orders import BIAS, Node, Tree, measure
from xorjobs.models.initial_weights import backprop_init, sequential_init
from xorjobs.models.networks import LAYER_WIDTHS, build_sequential
from xorjobs.models.packed import PackedMemberError, packing_is_exact, same_result, train_packed

# Slow and fast learners, a saturating one (5), and one that blows up (1000: NaN costs for backprop,
# saturated sigmoids and costs of 50 for the nn.Sequential variants).
MIXED_LRS = (0.01, 0.1, 1.0, 5.0, 1000.0, 0.5, 2.0)

MEASURED_CAPABILITIES = ("AVX2", "AVX512")
"""The solo kernel paths the packed trainer mirrors were measured on x86-64 AVX2 and AVX-512."""


@pytest.fixture(autouse=True)
def _kernels_were_measured_on_this_cpu() -> None:
    """Elsewhere these tests say nothing: skipped locally, a failure in CI (tests/ci.py)."""
    capability = torch.backends.cpu.get_cpu_capability()
    require(capability in MEASURED_CAPABILITIES, f"an x86-64 AVX2/AVX-512 CPU (this one is {capability})")


def bits(value: float) -> bytes:
    return struct.pack("<d", value)


def assert_same(packed_result: TrainResult, solo: TrainResult, label: str) -> None:
    """Every logged cost, the hypothesis, the labels and the accuracy, compared by their bits."""
    assert [s for s, _ in packed_result.costs] == [s for s, _ in solo.costs], label
    for (step, a), (_, b) in zip(packed_result.costs, solo.costs, strict=True):
        assert bits(a) == bits(b), f"{label}: step {step}: packed {a!r} != solo {b!r}"
    assert [bits(v) for v in packed_result.hypothesis] == [bits(v) for v in solo.hypothesis], label
    assert packed_result.predicted == solo.predicted, label
    assert bits(packed_result.accuracy) == bits(solo.accuracy), label
    assert same_result(packed_result, solo)
    assert packed_result.device_name == solo.device_name
    assert packed_result.cpu_capability == solo.cpu_capability


def check_against_solo(
    variant: str,
    seeds: list[int],
    lrs: list[float],
    steps: int,
    log_every: int,
    members: list[int] | None = None,
) -> list[TrainResult]:
    results = train_packed(variant, seeds, lrs, steps=steps, log_every=log_every)
    assert len(results) == len(seeds)
    for job in range(len(seeds)) if members is None else members:
        solo = train(variant, seeds[job], lrs[job], steps=steps, log_every=log_every)
        assert_same(results[job], solo, f"{variant} member {job} (seed {seeds[job]}, lr {lrs[job]})")
    return results


@pytest.mark.parametrize("variant", VARIANTS)
def test_mixed_lrs_every_cost_equals_solo(variant: str) -> None:
    """Seven members, one per lr, logging every step: all 600 costs of each equal its solo run's."""
    seeds = [0, 1, 777, 2**31 - 1, 12345, 2**63 - 1, 42]
    check_against_solo(variant, seeds, list(MIXED_LRS), steps=600, log_every=1)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("size", [1, 2])
def test_tiny_packs(variant: str, size: int) -> None:
    seeds = [3, 4][:size]
    lrs = [5.0, 1000.0][:size]
    check_against_solo(variant, seeds, lrs, steps=500, log_every=3)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("size", [64, 67])
def test_large_packs_sampled(variant: str, size: int) -> None:
    """An even and an odd pack size (the job count changes every flat length and vector tail); the first,
    last and a few middle members are compared, with different lrs at each position."""
    seeds = [1000 + job for job in range(size)]
    lrs = [MIXED_LRS[job % len(MIXED_LRS)] for job in range(size)]
    members = [0, 3, size // 2, size - 1]
    check_against_solo(variant, seeds, lrs, steps=600, log_every=10, members=members)


@pytest.mark.parametrize("variant", VARIANTS)
def test_full_length_runs(variant: str) -> None:
    """The default 10001 steps, logged every 100, against solo runs (which equal the seed's scripts and,
    where this CPU's kernels reproduce them, the reference files: test_models_fidelity)."""
    check_against_solo(variant, [777, 2024], [1.0, 0.1], steps=10001, log_every=100)


@pytest.mark.parametrize("variant", VARIANTS)
def test_steps_and_log_every_edge_cases(variant: str) -> None:
    seeds, lrs = [11, 12, 13], [0.5, 5.0, 1000.0]
    for steps, log_every in [(0, 1), (1, 1), (2, 5), (37, 36), (50, 1000)]:
        check_against_solo(variant, seeds, lrs, steps=steps, log_every=log_every)


@pytest.mark.parametrize("variant", ["nn", "wide_deep"])
def test_member_that_solo_would_raise_for(variant: str) -> None:
    """A NaN learning rate poisons the weights: the solo run raises from BCELoss at step 1. The packed
    member is reported with that same error and the costs logged before it; the others are unaffected."""
    seeds, lrs = [5, 6, 7], [1.0, math.nan, 0.1]
    with pytest.raises(PackedMemberError) as caught:
        train_packed(variant, seeds, lrs, steps=300, log_every=1)
    error = caught.value
    assert set(error.errors) == {1}
    solo_costs: list[tuple[int, float]] = []
    with pytest.raises(RuntimeError) as solo_error:
        train(
            variant, 6, math.nan, steps=300, log_every=1, on_progress=solo_costs.extend, progress_interval_s=0
        )
    assert str(error.errors[1]) == str(solo_error.value)
    assert error.partial_costs[1] == solo_costs
    assert error.results[1] is None
    for job in (0, 2):
        result = error.results[job]
        assert result is not None
        assert_same(result, train(variant, seeds[job], lrs[job], steps=300, log_every=1), f"member {job}")


def test_backprop_nan_costs_are_results_not_errors() -> None:
    results = check_against_solo("backprop", [3, 4], [1000.0, 1.0], steps=200, log_every=1)
    assert any(math.isnan(cost) for _, cost in results[0].costs)
    assert not any(math.isnan(cost) for _, cost in results[1].costs)


@pytest.mark.parametrize("variant", VARIANTS)
def test_on_progress_hands_over_each_members_new_costs(variant: str) -> None:
    chunks: list[list[list[tuple[int, float]]]] = []
    results = train_packed(
        variant,
        [1, 2, 3],
        [0.1, 1.0, 5.0],
        steps=120,
        log_every=10,
        on_progress=chunks.append,
        progress_interval_s=0,
    )
    assert len(chunks) == 12 + 1  # one per logged step, then the final flush (empty: a heartbeat)
    assert chunks[-1] == [[], [], []]
    for job, result in enumerate(results):
        assert [pair for chunk in chunks for pair in chunk[job]] == result.costs


def test_on_progress_may_abort() -> None:
    class Stop(Exception):
        pass

    def stop(_: list[list[tuple[int, float]]]) -> None:
        raise Stop

    before = torch.get_num_threads()
    with pytest.raises(Stop):
        train_packed("nn", [1, 2], [0.1, 0.2], steps=1000, on_progress=stop, progress_interval_s=0)
    assert torch.get_num_threads() == before


def test_leaves_global_state_alone() -> None:
    torch.manual_seed(99)
    state = torch.random.get_rng_state()
    threads = torch.get_num_threads()
    train_packed("wide_deep", [1, 2], [0.1, 0.2], steps=5)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.get_num_threads() == threads


@pytest.mark.parametrize("variant", ["nn", "wide_deep"])
def test_init_equals_build_sequential(variant: str) -> None:
    widths = LAYER_WIDTHS[variant]
    shapes = list(itertools.pairwise(widths))
    for seed in [*range(50), 2**32, 2**63 - 1, 2**64 - 1]:
        torch.manual_seed(seed)
        linears = [m for m in build_sequential(variant) if isinstance(m, torch.nn.Linear)]
        for (weight, bias), linear in zip(sequential_init(shapes, seed), linears, strict=True):
            assert torch.equal(weight, linear.weight)
            assert torch.equal(bias, linear.bias)


def test_init_equals_backprop_initial_params() -> None:
    for seed in [*range(50), 2**63 - 1]:
        expected = initial_params(seed, torch.device("cpu"))
        assert all(torch.equal(a, b) for a, b in zip(backprop_init(seed), expected, strict=True))


def test_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="unknown variant"):
        train_packed("cnn", [1], [0.1])
    with pytest.raises(ValueError, match="learning rates"):
        train_packed("nn", [1, 2], [0.1])
    with pytest.raises(ValueError, match="CPU only"):
        train_packed("nn", [1], [0.1], device="cuda", engine="exact")
    assert train_packed("nn", [], []) == []


@pytest.mark.parametrize("variant", VARIANTS)
def test_packing_is_exact_here(variant: str) -> None:
    assert packing_is_exact(variant)


def test_packing_is_exact_is_false_off_the_cpu() -> None:
    assert not packing_is_exact("nn", device="cuda")


@pytest.mark.parametrize("variant", ["nn", "wide_deep"])
def test_packing_is_exact_detects_a_vector_sigmoid(variant: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Send every sigmoid through the vectorised (SLEEF) path, including the elements the solo kernel
    leaves to its scalar tail: a few elements round differently, and the check must notice."""
    monkeypatch.setattr(packed_exact, "vector_chunk", lambda: 8)
    assert not packing_is_exact(variant)


def test_packing_is_exact_detects_a_reordered_sum(monkeypatch: pytest.MonkeyPatch) -> None:
    """Sum the K = 10 forward dot products in plain order, unfused, instead of the measured order."""
    measured = measure

    def sequential_forward(name: str, m: int, k: int, n: int, bias: bool) -> dict[tuple[int, int], Tree]:
        trees = measured(name, m, k, n, bias)
        if name != "linear_forward" or k != 10:
            return trees
        tree: Tree = 0
        for leaf in range(1, 10):
            tree = Node(tree, leaf)
        return {element: Node(tree, BIAS) for element in trees}

    monkeypatch.setattr(packed_exact, "measure", sequential_forward)
    assert not packing_is_exact("wide_deep")


def test_packing_is_exact_detects_a_different_exp(monkeypatch: pytest.MonkeyPatch) -> None:
    """The backprop script's sigmoid replaced by torch.sigmoid (SLEEF/glibc instead of VML exp)."""
    monkeypatch.setattr(packed_exact, "sigmoid", torch.sigmoid)
    assert not packing_is_exact("backprop")
