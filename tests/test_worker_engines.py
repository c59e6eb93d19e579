"""The worker trains through the engine registry and records the engine with every result (issue 11 §1).

Which engine: the first of ``packing_engines(device)`` whose self-check passes here (checked once per
process), solo where none does or packing is off, and solo for a lone job of a variant whose pack
engines lose alone. Every job stored through any engine still equals the seed's own loop bit for bit.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import check_job_against_the_seed_loop
from xorjobs.api import schemas
from xorjobs.models.engines import EXACT, NATIVE, SOLO, packing_engines
from xorjobs.settings import Settings
from xorjobs.spec import validate_spec
from xorjobs.store import queries
from xorjobs.store.schema import ensure_schema
from xorjobs.store.sweeps import create_sweep
from xorjobs.worker import packing
from xorjobs.worker.registration import engines_by_variant
from xorjobs.worker.runner import PACK_OF_ONE_IS_FASTER, RunOutcome, run_job


@pytest.fixture
def fresh_choices() -> Iterator[None]:
    """Each test chooses afresh (the choice is cached per process), then puts the cache back."""
    saved = dict(packing._chosen)
    packing._chosen.clear()
    yield
    packing._chosen.clear()
    packing._chosen.update(saved)


def first_passing(variant: str) -> str:
    """What the registry's order and this machine's self-checks give, asked directly."""
    engines = packing_engines("cpu")
    return next((engine.name for engine in engines if engine.self_check(variant, "cpu", 100)), SOLO.name)


def sweep(url: str, **fields: object) -> list[str]:
    ensure_schema(url)
    return [job.job_id for job in create_sweep(url, validate_spec(fields)).jobs]


@pytest.mark.parametrize("variant", ["nn", "wide_deep", "backprop"])
def test_the_worker_packs_with_the_first_engine_whose_self_check_passes(
    variant: str, fresh_choices: None
) -> None:
    chosen = packing.pack_engine(variant, "cpu")
    assert chosen.name == first_passing(variant)
    if variant == "backprop":
        assert chosen is not NATIVE  # the native kernel does not reproduce backprop's MKL exp/log
    assert packing.engine_for(variant, "cpu", pack_size=1) is SOLO  # packing off
    assert packing.pack_engine(variant, "cpu") is chosen


def test_each_self_check_runs_once_per_process_and_a_refused_engine_falls_through(
    fresh_choices: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[str] = []

    def refuse(variant: str, device: str, steps: int) -> bool:
        asked.append(variant)
        return False

    monkeypatch.setattr(NATIVE, "self_check", refuse)
    assert packing.pack_engine("nn", "cpu").name == (
        "exact" if EXACT.self_check("nn", "cpu", 100) else "solo"
    )
    packing.pack_engine("nn", "cpu")
    assert asked == ["nn"]
    monkeypatch.setattr(EXACT, "self_check", lambda variant, device, steps: False)
    assert packing.pack_engine("wide_deep", "cpu") is SOLO


def test_the_start_up_check_chooses_every_variant_s_engine_and_the_fleet_view_shows_it(
    tmp_path: Path, fresh_choices: None
) -> None:
    packing.check_all_variants()
    chosen = {variant: packing._chosen[(variant, "cpu")].name for variant in ("backprop", "nn", "wide_deep")}
    assert chosen == {variant: first_passing(variant) for variant in chosen}
    packed = Settings(home=tmp_path, pack_size=8)
    assert engines_by_variant(packed, ["cpu"]) == chosen
    assert set(engines_by_variant(Settings(home=tmp_path, pack_size=1), ["cpu"]).values()) == {"solo"}


def test_every_stored_job_records_its_engine_and_equals_the_seed_loop(
    database_url: str, tmp_path: Path, fresh_choices: None
) -> None:
    settings = Settings(home=tmp_path, database_url=database_url, pack_size=8, progress_seconds=0.05)
    nn_ids = sweep(database_url, variants=["nn"], seeds=[1, 2, 3], lrs=[0.5, 1000.0], steps=300, log_every=30)
    lone_nn = sweep(database_url, variants=["nn"], seeds=[4], steps=120, log_every=40)
    lone_backprop = sweep(database_url, variants=["backprop"], seeds=[5], steps=120, log_every=40)
    unpacked = sweep(database_url, variants=["wide_deep"], seeds=[6], steps=120, log_every=40)
    assert run_job(nn_ids[0], "w", settings) in (RunOutcome.SUCCEEDED, RunOutcome.FAILED)
    assert run_job(lone_nn[0], "w", settings) is RunOutcome.SUCCEEDED
    assert run_job(lone_backprop[0], "w", settings) is RunOutcome.SUCCEEDED
    assert run_job(unpacked[0], "w", settings.model_copy(update={"pack_size": 1})) is RunOutcome.SUCCEEDED

    nn_engine = first_passing("nn")
    lone_backprop_engine = first_passing("backprop") if "backprop" in PACK_OF_ONE_IS_FASTER else "solo"
    expected = {
        **dict.fromkeys(nn_ids, nn_engine),
        lone_nn[0]: nn_engine,
        lone_backprop[0]: lone_backprop_engine,
        unpacked[0]: "solo",
    }
    for job_id, engine in expected.items():
        record = queries.job_detail(database_url, job_id)
        schemas.Job.model_validate(record)  # the API's job record carries the engine
        if record["state"] == "failed":  # a diverging member: its solo run raises too, nothing stored
            assert "RuntimeError" in record["error"] and record["engine"] is None
            continue
        assert record["state"] == "succeeded" and record["engine"] == engine, job_id
        check_job_against_the_seed_loop({**record, "costs": queries.job_costs(database_url, job_id)})
