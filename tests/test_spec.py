"""The job contract: validation and grid expansion (pure functions, no services)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers import BAD_SPECS
from xorjobs.errors import InvalidSpec
from xorjobs.spec import MAX_JOBS_PER_SWEEP, SweepSpec, expand, validate_spec
from xorjobs.spec_tokens import parse_lrs, parse_seeds


def test_defaults_are_the_seed_scripts() -> None:
    spec = SweepSpec()
    assert spec.variants == ["nn", "wide_deep", "backprop"]
    assert (spec.seeds, spec.lrs, spec.steps, spec.log_every, spec.device) == (
        [777],
        [1.0],
        10001,
        100,
        "cpu",
    )
    assert [(job.variant, job.seed, job.lr) for job in expand(spec)] == [
        ("nn", 777, 1.0),
        ("wide_deep", 777, 1.0),
        ("backprop", 777, 1.0),
    ]


def test_log_every_defaults_to_100_or_the_whole_run() -> None:
    assert validate_spec({}).log_every == 100
    assert validate_spec({"steps": 50}).log_every == 50
    assert validate_spec({"steps": 50, "log_every": 7}).log_every == 7


def test_expansion_order_is_variant_then_seed_then_lr_as_given() -> None:
    spec = validate_spec({"variants": ["wide_deep", "nn"], "seeds": [5, 1], "lrs": [0.5, 0.1]})
    assert [(j.variant, j.seed, j.lr) for j in expand(spec)] == [
        ("wide_deep", 5, 0.5), ("wide_deep", 5, 0.1), ("wide_deep", 1, 0.5), ("wide_deep", 1, 0.1),
        ("nn", 5, 0.5), ("nn", 5, 0.1), ("nn", 1, 0.5), ("nn", 1, 0.1),
    ]  # fmt: skip


@given(
    variants=st.lists(st.sampled_from(["nn", "wide_deep", "backprop"]), min_size=1, max_size=3, unique=True),
    seeds=st.lists(st.integers(0, 2**63 - 1), min_size=1, max_size=20, unique=True),
    # Distinct in float32, which the models train in (two rates equal there are one job twice: refused).
    lrs=st.lists(st.floats(min_value=2**-20, max_value=1000, width=32), min_size=1, max_size=20, unique=True),
)
@settings(max_examples=200, deadline=None)
def test_expansion_has_one_job_per_combination(
    variants: list[str], seeds: list[int], lrs: list[float]
) -> None:
    spec = validate_spec({"variants": variants, "seeds": seeds, "lrs": lrs})
    jobs = expand(spec)
    assert len(jobs) == len(variants) * len(seeds) * len(lrs)
    assert len({(j.variant, j.seed, j.lr) for j in jobs}) == len(jobs)
    assert [j.position for j in jobs] == list(range(len(jobs)))


@pytest.mark.parametrize(("fields", "field"), BAD_SPECS)
def test_invalid_spec_names_the_field(fields: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidSpec) as raised:
        validate_spec(fields)
    assert raised.value.field == field


def test_boundaries_are_accepted() -> None:
    spec = validate_spec(
        # 2**-149: the smallest positive float32 (a smaller rate rounds to 0 there and is refused).
        {"seeds": [0, 2**63 - 1], "lrs": [1000.0, 2**-149], "steps": 1_000_000, "log_every": 1_000_000}
    )
    assert spec.job_count == 12
    assert validate_spec({"seeds": list(range(MAX_JOBS_PER_SWEEP)), "variants": ["nn"]}).job_count == 10_000


def test_seed_tokens_take_lists_and_inclusive_ranges() -> None:
    assert parse_seeds(["777", "1-3,10", "5-5"]) == [777, 1, 2, 3, 10, 5]


@pytest.mark.parametrize("token", ["3-1", "-1", "a", "1.5", "1-", "99999999999999999999", "1--2"])
def test_bad_seed_tokens_are_refused(token: str) -> None:
    with pytest.raises(InvalidSpec) as raised:
        parse_seeds([token])
    assert raised.value.field == "seed"


def test_a_huge_seed_range_is_refused_without_expanding_it() -> None:
    # Building this list would exhaust memory: raising at all shows the count is checked first.
    with pytest.raises(InvalidSpec, match="more than 10000 seeds"):
        parse_seeds(["0-999999999999"])


@pytest.mark.parametrize("token", ["nan", "inf", "-inf", "1e309", "abc"])
def test_bad_learning_rate_tokens_are_refused(token: str) -> None:
    with pytest.raises(InvalidSpec) as raised:
        parse_lrs([token])
    assert raised.value.field == "lr"
