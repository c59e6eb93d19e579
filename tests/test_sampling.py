"""Sampled learning rates and seeds (issue 12 §2): the draw, its record, the CLI's compact forms, and the
idempotency comparison of sampled requests."""

from __future__ import annotations

import math
import random

import pytest

from xorjobs.cli.sweep_options import build_spec
from xorjobs.errors import InvalidSpec
from xorjobs.sampling import draw_lrs
from xorjobs.spec import LrSample, SweepSpec, as_float32, validate_spec
from xorjobs.store.sweeps import same_request

LOG_UNIFORM = {"sample": "log_uniform", "low": 1e-3, "high": 10.0, "count": 50}
RANDOM_SEEDS = {"sample": "random", "count": 20}


def test_the_same_sampler_seed_draws_the_same_jobs_and_another_seed_others() -> None:
    first = validate_spec({"lrs": LOG_UNIFORM, "seeds": RANDOM_SEEDS, "sampler_seed": 5})
    again = validate_spec({"lrs": LOG_UNIFORM, "seeds": RANDOM_SEEDS, "sampler_seed": 5})
    other = validate_spec({"lrs": LOG_UNIFORM, "seeds": RANDOM_SEEDS, "sampler_seed": 6})
    assert (first.lrs, first.seeds) == (again.lrs, again.seeds)
    assert first.lrs != other.lrs and first.seeds != other.seeds
    assert len(first.lrs) == 50 and len(set(map(as_float32, first.lrs))) == 50
    assert first.lrs == sorted(first.lrs) and all(1e-3 <= lr <= 10 for lr in first.lrs)
    assert len(set(first.seeds)) == 20 and all(0 <= seed < 2**31 for seed in first.seeds)
    assert first.job_count == 3 * 50 * 20


def test_the_draw_is_the_documented_formula_on_python_random() -> None:
    # The README's promise, so another machine (or a reader) can redraw it: Random(2 * S), random() only.
    stream = random.Random(2 * 9)
    expected = []
    for _ in range(3):
        u = stream.random()
        expected.append(float(f"{math.exp(math.log(0.1) + (math.log(2.0) - math.log(0.1)) * u):.6g}"))
    drawn = draw_lrs(LrSample(sample="log_uniform", low=0.1, high=2.0, count=3), 9)
    assert drawn == sorted(expected)


def test_more_seeds_leave_the_drawn_lrs_as_they_were() -> None:
    few = validate_spec({"lrs": LOG_UNIFORM, "seeds": {"sample": "random", "count": 2}, "sampler_seed": 1})
    many = validate_spec({"lrs": LOG_UNIFORM, "seeds": {"sample": "random", "count": 9}, "sampler_seed": 1})
    assert few.lrs == many.lrs


def test_the_stored_spec_records_the_request_and_the_draw_and_reads_back() -> None:
    spec = validate_spec({"variants": ["nn"], "lrs": {**LOG_UNIFORM, "count": 3}})
    stored = spec.model_dump(mode="json")
    assert stored["sampling"]["lrs"] == {**LOG_UNIFORM, "count": 3} and stored["sampling"]["generated_seed"]
    assert isinstance(stored["sampler_seed"], int) and len(stored["lrs"]) == 3
    assert SweepSpec.model_validate(stored) == spec  # a stored spec validates again (it is checked)
    with pytest.raises(InvalidSpec, match=r"not the draw of sampling\.lrs"):
        validate_spec({**stored, "lrs": [0.5, 0.6, 0.7]})  # a record that lies about its values


@pytest.mark.parametrize(
    ("request_fields", "field"),
    [
        ({"lrs": {**LOG_UNIFORM, "low": 0}}, "lrs.low"),
        ({"lrs": {**LOG_UNIFORM, "high": 1001}}, "lrs.high"),
        ({"lrs": {**LOG_UNIFORM, "low": math.inf}}, "lrs.low"),
        ({"lrs": {**LOG_UNIFORM, "low": 1e-320}}, "lrs.low"),
        ({"lrs": {**LOG_UNIFORM, "low": 5, "high": 5}}, "lrs.high"),
        ({"lrs": {**LOG_UNIFORM, "count": 0}}, "lrs.count"),
        ({"lrs": {**LOG_UNIFORM, "sample": "normal"}}, "lrs.sample"),
        ({"lrs": {**LOG_UNIFORM, "mean": 1}}, "lrs.mean"),
        ({"seeds": {"sample": "random"}}, "seeds.count"),
        ({"seeds": {"sample": "random", "count": 20_000}}, "seeds.count"),
        ({"sampler_seed": 4}, "sampler_seed"),
        ({"lrs": LOG_UNIFORM, "sampler_seed": -1}, "sampler_seed"),
        ({"lrs": LOG_UNIFORM, "sampler_seed": True}, "sampler_seed"),
        ({"lrs": LOG_UNIFORM, "seeds": {"sample": "random", "count": 300}}, "sweep"),  # 45,000 jobs
    ],
)
def test_bad_sampled_requests_name_their_key(request_fields: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidSpec) as raised:
        validate_spec(request_fields)
    assert raised.value.field == field, raised.value


def test_draws_that_repeat_in_float32_are_redrawn_and_too_narrow_a_range_is_refused() -> None:
    narrow = validate_spec({"lrs": {"sample": "uniform", "low": 1.0, "high": 1.001, "count": 50}})
    assert len({as_float32(lr) for lr in narrow.lrs}) == 50  # only 101 values at 6 digits: repeats redrawn
    with pytest.raises(InvalidSpec, match="fewer than 50 distinct learning rates"):
        validate_spec({"lrs": {"sample": "uniform", "low": 1.0, "high": 1.0001, "count": 50}})


def test_the_compact_flags_are_the_file_forms() -> None:
    spec = build_spec(["nn"], ["random:4"], ["loguniform:1e-3:10:5"], sampler_seed="3")
    assert spec == validate_spec(
        {"variants": ["nn"], "seeds": {"sample": "random", "count": 4}, "lrs": {**LOG_UNIFORM, "count": 5}}
        | {"sampler_seed": 3}
    )
    uniform = build_spec(None, None, ["uniform:0.1:2:20"], sampler_seed="3")
    assert uniform.sampling is not None and uniform.sampling.lrs == LrSample(
        sample="uniform", low=0.1, high=2.0, count=20
    )


@pytest.mark.parametrize(
    ("lrs", "seeds", "message"),
    [
        (["loguniform:1e-3:10"], None, "--lr: 'loguniform:1e-3:10': write loguniform:LOW:HIGH:COUNT"),
        (["0.5", "uniform:1:2:3"], None, "--lr: 'uniform:1:2:3' is a sampled --lr: give it alone"),
        (["loguniform:0:10:5"], None, "--lr: low: Input should be greater than 0 (got 0.0)"),
        (["uniform:2:1:5"], None, "--lr: high: 1.0 must be above low (2.0)"),
        (None, ["random:1_0"], "--seed: '1_0' is not a non-negative integer"),
        (None, ["random:3", "7"], "--seed: 'random:3' is a sampled --seed: give it alone"),
    ],
)
def test_bad_compact_flags_name_the_flag(
    lrs: list[str] | None, seeds: list[str] | None, message: str
) -> None:
    with pytest.raises(InvalidSpec) as raised:
        build_spec(None, seeds, lrs)
    assert str(raised.value).startswith(message), raised.value


def test_a_resubmit_naming_no_sampler_seed_is_the_same_request_but_another_seed_is_not() -> None:
    request: dict[str, object] = {"variants": ["nn"], "lrs": {**LOG_UNIFORM, "count": 4}}
    stored = validate_spec(request).model_dump(mode="json")  # generated seed
    assert same_request(stored, validate_spec(request))  # its own generated seed differs: still the same
    assert same_request(stored, validate_spec({**request, "sampler_seed": stored["sampler_seed"]}))
    assert not same_request(stored, validate_spec({**request, "sampler_seed": stored["sampler_seed"] + 1}))
    assert not same_request(stored, validate_spec({**request, "lrs": {**LOG_UNIFORM, "count": 5}}))
    # A sweep stored before a field existed matches a spec with that field at its default.
    plain = validate_spec({"variants": ["nn"], "steps": 20}).model_dump(mode="json")
    old = {
        key: value for key, value in plain.items() if key not in ("sampler_seed", "sampling", "stop_below")
    }
    assert same_request(old, validate_spec({"variants": ["nn"], "steps": 20}))
