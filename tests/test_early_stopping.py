"""Early stopping (issue 12 §3) in every CPU engine: a job that stops at logged step s equals, bit for
bit, the solo run of the same job with ``steps = s + 1``, and stops at the same step in every engine.

Each pack mixes jobs that stop at different logged steps, jobs that never stop, and a member that
diverges (an ``inf`` learning rate: its parameters go NaN, so its solo run raises, for nn and
wide_deep; lr 1000 gives backprop NaN costs, which are results). Compaction is checked to happen:
the packs really shrink (``StepPack.select``, the native engine's regrouping).
"""

from __future__ import annotations

import math
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.ci import unavailable
from xorjobs.cli.sweep_options import build_spec
from xorjobs.errors import InvalidSpec
from xorjobs.models import native_engine, pack_loop
from xorjobs.models.engine import Engine, PackedMemberError
from xorjobs.models.engines import EXACT, NATIVE, SOLO
from xorjobs.models.result import TrainResult
from xorjobs.models.self_check import same_result
from xorjobs.models.stopping import COST_BELOW, SOLVED, StopRule
from xorjobs.models.train import train
from xorjobs.spec import validate_spec

STEPS = 900
# Fast and slow learners: at these rates some nn/backprop jobs stop within a few hundred steps, others
# never do; the last one diverges.
JOBS = {
    "nn": [(3, 2.0), (4, 5.0), (6, 1.0), (5, 1.0), (8, 10.0), (1, 0.5), (9, math.inf)],
    "wide_deep": [(3, 2.0), (4, 5.0), (5, 5.0), (8, 10.0), (9, math.inf)],
    "backprop": [(1, 1.0), (7, 1.0), (9, 1.0), (11, 2.0), (3, 2.0), (5, 10.0), (3, 1000.0)],
}
RULES = {
    "nn": [StopRule(0.05), StopRule(None, True), StopRule(0.3, True)],
    # The deep sigmoid stack learns slowly: in 900 steps only seed 5 at lr 5 gets below 0.5 or solves.
    "wide_deep": [StopRule(0.5), StopRule(None, True), StopRule(0.3, True)],
    "backprop": [StopRule(0.05), StopRule(None, True), StopRule(0.3, True)],
}


def engines_for(variant: str) -> list[Engine]:
    engines: list[Engine] = [SOLO, EXACT]
    if variant != "backprop":
        if NATIVE.self_check(variant, "cpu", 100):
            engines.append(NATIVE)
        elif torch.backends.cpu.get_cpu_capability().startswith(("AVX2", "AVX512")):
            pytest.fail("the native engine should run on this CPU")
    return engines


def train_all(
    engine: Engine, variant: str, rule: StopRule, log_every: int
) -> tuple[list[TrainResult | None], set[int]]:
    seeds = [seed for seed, _ in JOBS[variant]]
    lrs = [lr for _, lr in JOBS[variant]]
    try:
        return list(engine.train(variant, seeds, lrs, steps=STEPS, log_every=log_every, stop=rule)), set()
    except PackedMemberError as failure:
        return list(failure.results), set(failure.errors)


@pytest.mark.parametrize("variant", ["nn", "wide_deep", "backprop"])
def test_a_stopped_job_equals_its_run_truncated_there_in_every_engine(
    variant: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every engine stops each job at the same logged step, for the same reason, and its costs,
    hypothesis, labels and accuracy equal the solo run with steps = stopped_at_step + 1."""
    selected: list[int] = []
    regrouped: list[int] = []
    original_compact = pack_loop._compact
    original_regroup = native_engine._NativeRun._regroup

    def counting_compact(pack: pack_loop.StepPack, leaving: torch.Tensor, *args: object) -> object:
        selected.append(int((~leaving).sum()))
        return original_compact(pack, leaving, *args)  # type: ignore[arg-type]

    def counting_regroup(self: native_engine._NativeRun, lanes: np.ndarray) -> None:
        regrouped.append(len(lanes))
        original_regroup(self, lanes)

    monkeypatch.setattr(pack_loop, "_compact", counting_compact)
    monkeypatch.setattr(native_engine._NativeRun, "_regroup", counting_regroup)
    log_every = 50 if variant != "wide_deep" else 100
    stopped_somewhere = False
    for rule in RULES[variant]:
        reference, reference_failed = train_all(SOLO, variant, rule, log_every)
        for engine in engines_for(variant)[1:]:
            results, failed = train_all(engine, variant, rule, log_every)
            assert failed == reference_failed, (engine.name, rule)
            for index, (result, solo) in enumerate(zip(results, reference, strict=True)):
                if solo is None:
                    assert result is None
                    continue
                assert result is not None
                where = (engine.name, rule, JOBS[variant][index])
                assert (result.stopped_at_step, result.stop_reason) == (
                    solo.stopped_at_step,
                    solo.stop_reason,
                ), where
                assert same_result(result, solo), where
        for index, solo in enumerate(reference):
            if solo is None:
                continue
            seed, lr = JOBS[variant][index]
            steps = solo.steps_trained(STEPS)
            truncated = train(variant, seed, lr, steps=steps, log_every=log_every)
            assert same_result(solo, truncated), (rule, seed, lr)
            if solo.stopped_at_step is not None:
                stopped_somewhere = True
                assert solo.costs[-1][0] == solo.stopped_at_step
                if solo.stop_reason == COST_BELOW:
                    assert rule.below is not None and solo.costs[-1][1] < rule.below
                else:
                    assert solo.stop_reason == SOLVED and rule.when_solved
    assert stopped_somewhere
    assert selected  # the exact packs shrank
    if variant != "backprop" and NATIVE in engines_for(variant):
        assert regrouped  # and the native engine's lanes were regrouped


def test_native_lanes_move_from_big_to_small_blocks_as_jobs_stop(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 256-job native pack starts in 128-lane blocks and, as jobs stop, regroups into the kernel's
    32-lane blocks where those waste fewer padding lanes: every job equals the exact engine's, stops
    included."""
    if not NATIVE.self_check("nn", "cpu", 100):
        unavailable("the native engine (its self-check refused this machine)")
    blocks: list[int] = []
    original_pack = native_engine._NativeRun._pack

    def recording_pack(self: native_engine._NativeRun) -> object:
        blocks.append(self.block)
        return original_pack(self)

    monkeypatch.setattr(native_engine._NativeRun, "_pack", recording_pack)
    seeds = list(range(256))
    lrs = [(2.0, 5.0, 10.0, 0.5)[seed % 4] for seed in seeds]
    rule = StopRule(0.05)
    native = NATIVE.train("nn", seeds, lrs, steps=1200, log_every=50, stop=rule)
    exact = EXACT.train("nn", seeds, lrs, steps=1200, log_every=50, stop=rule)
    assert blocks[0] == 128 and 32 in blocks, blocks
    assert sum(r.stopped_at_step is not None for r in exact) > 100
    for a, b in zip(native, exact, strict=True):
        assert (a.stopped_at_step, a.stop_reason) == (b.stopped_at_step, b.stop_reason)
        assert same_result(a, b)


def test_stops_at_every_logged_step_and_odd_intervals() -> None:
    """Logging every 7 steps: the native engine's segments and the exact pack's compaction at steps
    that are not multiples of its call sizes; one job stopping per logged step at most."""
    seeds, lrs = [3, 4, 8, 6], [2.0, 5.0, 10.0, 1.0]
    rule = StopRule(0.2)
    solo = SOLO.train("nn", seeds, lrs, steps=700, log_every=7, stop=rule)
    engines = [EXACT, NATIVE] if NATIVE.self_check("nn", "cpu", 100) else [EXACT]
    for engine in engines:
        packed = engine.train("nn", seeds, lrs, steps=700, log_every=7, stop=rule)
        for a, b in zip(packed, solo, strict=True):
            assert (a.stopped_at_step, a.stop_reason) == (b.stopped_at_step, b.stop_reason)
            assert same_result(a, b)
    assert len({result.stopped_at_step for result in solo}) >= 3


def test_no_rule_trains_every_step() -> None:
    results = EXACT.train("nn", [4], [5.0], steps=400, log_every=50)
    assert results[0].stopped_at_step is None and results[0].stop_reason is None
    assert results[0].steps_trained(400) == 400
    assert same_result(results[0], train("nn", 4, 5.0, steps=400, log_every=50))


def test_the_threshold_is_compared_as_a_double_in_every_engine() -> None:
    """The logged cost is a float32; 0.7 is not. float32(0.7) = 0.69999998... is below 0.7 as real
    numbers, but not below 0.7 rounded to float32: the solo path and the pack path agree on 'below'."""
    cost32 = struct.unpack("f", struct.pack("f", 0.7))[0]
    rule = StopRule(0.7)
    hypothesis, y = torch.full((4, 1), 0.5), torch.tensor([[0.0], [1.0], [1.0], [0.0]])
    assert rule.reason(cost32, hypothesis, y) == COST_BELOW
    below, solved = rule.reasons(torch.tensor([cost32]), hypothesis, y, torch.tensor([True]))
    assert below.tolist() == [True] and solved.tolist() == [False]
    assert not bool((torch.tensor([cost32]) < 0.7).item())  # what a float32 comparison would say
    # A failed member (not alive) never stops, whatever its dummy cost.
    below, _ = rule.reasons(torch.tensor([0.1]), hypothesis, y, torch.tensor([False]))
    assert below.tolist() == [False]


def test_solved_uses_the_seeds_label_rule() -> None:
    """Solved means (hypothesis > 0.5) == Y for all four inputs: 0.5 exactly is a 0 label."""
    y = torch.tensor([[0.0], [1.0], [1.0], [0.0]])
    rule = StopRule(None, True)
    assert rule.reason(1.0, torch.tensor([[0.5], [0.6], [0.51], [0.1]]), y) == SOLVED
    assert rule.reason(1.0, torch.tensor([[0.2], [0.5], [0.9], [0.1]]), y) is None
    assert rule.reason(1.0, torch.full((4, 1), math.nan), y) is None


def test_sweep_fields_and_flags_are_validated() -> None:
    spec = validate_spec({"stop_below": 0.05, "stop_when_solved": True})
    assert (spec.stop_below, spec.stop_when_solved) == (0.05, True)
    assert validate_spec({}).stop_below is None and not validate_spec({}).stop_when_solved
    for bad in (0, -1.0, math.inf, math.nan, "0.1", True):
        with pytest.raises(InvalidSpec) as refused:
            validate_spec({"stop_below": bad})
        assert refused.value.field == "stop_below"
    with pytest.raises(InvalidSpec) as refused:
        validate_spec({"stop_when_solved": 1})
    assert refused.value.field == "stop_when_solved"
    flags = build_spec(["nn"], None, None, "300", stop_below="0.05", stop_when_solved=True)
    assert (flags.stop_below, flags.stop_when_solved) == (0.05, True)
    for bad in ("0", "nan", "inf", "x", "1e999", "-0.5"):
        with pytest.raises(InvalidSpec) as refused:
            build_spec(["nn"], None, None, "300", stop_below=bad)
        assert refused.value.field == "--stop-below", bad


@pytest.mark.parametrize("variant", ["nn", "backprop"])
def test_the_batched_engine_stops_and_compacts_on_the_cpu(variant: str) -> None:
    """The CUDA engine's maths (eager, on the CPU here; no GPU in CI): each member stops at the first
    logged step whose own logged cost is below the threshold, the others run every step, and the pack
    shrinks as they leave. (Its CUDA-graph pack re-captures its graphs for the smaller pack.)"""
    from xorjobs.models.packed_batched import BatchedEngine

    seeds = [seed for seed, _ in JOBS[variant]]
    lrs = [lr for _, lr in JOBS[variant]]
    engine = BatchedEngine(graphs=False)
    try:
        results: list[TrainResult | None] = list(
            engine.train(variant, seeds, lrs, steps=STEPS, log_every=50, stop=StopRule(0.3))
        )
    except PackedMemberError as failure:
        results = list(failure.results)
    stopped = 0
    for result in results:
        if result is None:
            continue
        first = next((step for step, cost in result.costs if cost < 0.3), None)
        assert result.stopped_at_step == first
        assert result.steps_trained(STEPS) == (STEPS if first is None else first + 1)
        stopped += first is not None
    assert stopped


def test_a_rule_that_holds_at_the_last_step_is_recorded_in_every_engine() -> None:
    """nn seed 4 at lr 5 gets below 0.05 at logged step 300: trained for 301 steps, every engine says it
    stopped there (having trained all its steps), and the numbers are the plain 301-step run's."""
    rule = StopRule(0.05)
    plain = train("nn", 4, 5.0, steps=301, log_every=100)
    engines = [SOLO, EXACT, NATIVE] if NATIVE.self_check("nn", "cpu", 100) else [SOLO, EXACT]
    for engine in engines:
        (result,) = engine.train("nn", [4], [5.0], steps=301, log_every=100, stop=rule)
        assert (result.stopped_at_step, result.stop_reason) == (300, COST_BELOW), engine.name
        assert result.steps_trained(301) == 301 and same_result(result, plain)


def test_the_api_takes_the_rule_and_shows_it(tmp_path: Path) -> None:
    """POST /sweeps's body is the SweepSpec: the rule is stored with each job and shown by GET /jobs."""
    from fastapi.testclient import TestClient

    from xorjobs.api.main import create_app
    from xorjobs.settings import Settings
    from xorjobs.store.schema import upgrade

    settings = Settings(home=tmp_path / "home")
    upgrade(settings.resolved_database_url)
    with TestClient(create_app(settings)) as client:
        body = {
            "variants": ["nn"],
            "seeds": [1, 2],
            "steps": 300,
            "stop_below": 0.05,
            "stop_when_solved": True,
        }
        created = client.post("/sweeps", json=body)
        assert created.status_code == 201, created.text
        job = client.get(f"/jobs/{created.json()['jobs'][0]['id']}").json()
        assert (job["stop_below"], job["stop_when_solved"]) == (0.05, True)
        assert job["steps_trained"] is None and job["stopped_at_step"] is None and job["stop_reason"] is None
        refused = client.post("/sweeps", json={**body, "stop_below": 0})
        assert refused.status_code == 422 and "stop_below" in refused.text


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("variant", ["nn", "wide_deep", "backprop"])
def test_cuda_graphs_stop_and_compact_as_the_eager_steps_do(variant: str) -> None:
    """On a GPU: a graphed pack that drops members (its graphs captured anew at each smaller size)
    computes what the same batched ops compute eagerly, stops included."""
    from xorjobs.models.packed_batched import BatchedEngine

    seeds = [seed for seed, _ in JOBS[variant]]
    lrs = [lr for _, lr in JOBS[variant]]
    rule = RULES[variant][2]

    def run(graphs: bool) -> list[TrainResult | None]:
        try:
            return list(
                BatchedEngine(graphs=graphs).train(
                    variant, seeds, lrs, steps=STEPS, log_every=50, device="cuda", stop=rule
                )
            )
        except PackedMemberError as failure:
            return list(failure.results)

    for graphed, eager in zip(run(True), run(False), strict=True):
        assert (graphed is None) == (eager is None)
        if graphed is not None and eager is not None:
            assert (graphed.stopped_at_step, graphed.costs, graphed.hypothesis) == (
                eager.stopped_at_step,
                eager.costs,
                eager.hypothesis,
            )
