"""The engine interface (``models.engine``): every engine behaves alike to its caller (issue 10).

The numbers each engine computes are checked in test_packed.py (exact), test_packed_batched.py (batched)
and test_models_fidelity.py (solo); these tests check the contract: the registry, the per-job progress
chunks, and that a member failure looks the same whichever engine ran it.
"""

from __future__ import annotations

import math

import pytest

from xorjobs.models import train
from xorjobs.models.engine import CostChunk, PackedMemberError
from xorjobs.models.engines import BATCHED, ENGINES, EXACT, NATIVE, SOLO, engine_named, packing_engines
from xorjobs.models.packed import same_result, train_packed


def test_the_registry_names_each_engine_once() -> None:
    assert {name: engine.name for name, engine in ENGINES.items()} == {
        "solo": "solo",
        "exact": "exact",
        "batched": "batched",
        "native": "native",
    }
    assert engine_named("exact") is EXACT
    with pytest.raises(
        ValueError, match="unknown engine 'fast'; expected one of solo, exact, batched, native"
    ):
        engine_named("fast")
    with pytest.raises(ValueError, match="unknown engine"):
        train_packed("nn", [1], [0.1], engine="fast")


def test_which_engines_pack_where() -> None:
    assert packing_engines("cpu") == (NATIVE, EXACT)
    assert packing_engines("cuda") == (BATCHED,)
    assert [engine.packs for engine in (SOLO, EXACT, BATCHED)] == [False, True, True]
    assert SOLO.self_check("nn", "cpu", 10)
    assert not BATCHED.self_check("nn", "cpu", 10)  # on the CPU only an exact engine may pack
    assert not EXACT.self_check("nn", "cuda", 10)


def test_the_solo_engine_is_models_train_with_pack_progress() -> None:
    chunks: list[list[CostChunk]] = []
    seeds, lrs = [3, 4], [0.5, 5.0]
    results = SOLO.train(
        "nn", seeds, lrs, steps=40, log_every=10, on_progress=chunks.append, progress_interval_s=0
    )
    for job, (seed, lr, result) in enumerate(zip(seeds, lrs, results, strict=True)):
        assert same_result(result, train("nn", seed, lr, steps=40, log_every=10))
        assert [pair for chunk in chunks for pair in chunk[job]] == result.costs
    assert all(len(chunk) == len(seeds) for chunk in chunks)


@pytest.mark.parametrize("name", ["solo", "exact", "batched"])
def test_a_member_that_solo_would_raise_for_fails_alike_in_every_engine(name: str) -> None:
    """A NaN learning rate: BCELoss raises in the solo run; every engine reports that member, with the
    solo run's error, and the others' results."""
    seeds, lrs = [5, 6, 7], [1.0, math.nan, 0.1]
    with pytest.raises(PackedMemberError) as caught:
        ENGINES[name].train(
            "nn", seeds, lrs, steps=60, log_every=10, on_progress=lambda _: None, progress_interval_s=0
        )
    failure = caught.value
    assert set(failure.errors) == {1}
    assert "between 0 and 1" in str(failure.errors[1])
    assert failure.results[1] is None
    assert [len(result.costs) for result in failure.results if result is not None] == [6, 6]
    assert failure.partial_costs[1] == [(0, failure.partial_costs[1][0][1])]  # step 0's cost, then it fails


def test_an_abort_from_on_progress_is_not_a_member_failure() -> None:
    class Cancelled(RuntimeError):
        pass

    def cancel(_: list[CostChunk]) -> None:
        raise Cancelled

    for engine in (SOLO, EXACT):
        with pytest.raises(Cancelled):
            engine.train("nn", [1, 2], [0.1, 0.2], steps=50, on_progress=cancel, progress_interval_s=0)


@pytest.mark.parametrize("name", ["solo", "exact", "batched"])
def test_every_engine_checks_its_arguments_alike(name: str) -> None:
    trainer = ENGINES[name]
    with pytest.raises(ValueError, match="unknown variant"):
        trainer.train("cnn", [1], [0.1])
    with pytest.raises(ValueError, match="learning rates"):
        trainer.train("nn", [1, 2], [0.1])
    with pytest.raises(ValueError, match="log_every"):
        trainer.train("nn", [1], [0.1], log_every=0)
    assert trainer.train("nn", [], []) == []
