"""final_cost is the trained model's cost (issue 12, section 4), last_logged_cost the last logged one.

The seed logs each cost *before* that step's update, so with ``--steps 10`` the last logged cost is the
untrained step-0 cost. ``final_cost`` is the seed's criterion of the final hypothesis (after training,
under ``no_grad``), for every engine; here it is recomputed with torch from the stored hypothesis, and
compared with the cost the seed's loop logs one step later, bit for bit.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
import torch
from alembic import command

from tests.helpers import Json, run_main, same_bits, seed_trained_cost
from tests.services import XORJOBS, clean_env
from xorjobs import plots
from xorjobs.defaults import VARIANTS
from xorjobs.models import train
from xorjobs.models.engines import BATCHED, EXACT, NATIVE, SOLO
from xorjobs.store import queries
from xorjobs.store.engine import get_engine
from xorjobs.store.schema import alembic_config, upgrade
from xorjobs.testing.seed_scripts import run_seed_script
from xorjobs.worker.outcomes import outcome_of


def engines_here() -> list[tuple[Any, str]]:
    """Every engine that may train here, with its device: solo and the exact pack always, the native
    kernel where it is built and passes its check, the batched CUDA pack where there is a GPU."""
    chosen: list[tuple[Any, str]] = [(SOLO, "cpu"), (EXACT, "cpu")]
    if NATIVE.self_check("nn", "cpu", 10):
        chosen.append((NATIVE, "cpu"))
    if torch.cuda.is_available():
        chosen.append((BATCHED, "cuda"))
    return chosen


@pytest.mark.parametrize("variant", VARIANTS)
def test_with_10_steps_final_cost_is_the_trained_cost_for_every_engine(variant: str) -> None:
    seeds, lrs = [777, 1], [1.0, 0.5]
    one_step_longer = {
        (seed, lr): train(variant, seed, lr, steps=11, log_every=10).costs for seed in seeds for lr in lrs
    }
    for engine, device in engines_here():
        if device == "cpu" and not engine.self_check(variant, device, 10):
            continue  # the engine does not pack this variant here (native: backprop)
        results = engine.train(
            variant, [777, 777, 1, 1], [1.0, 0.5, 1.0, 0.5], steps=10, log_every=10, device=device
        )
        for (seed, lr), result in zip([(777, 1.0), (777, 0.5), (1, 1.0), (1, 0.5)], results, strict=True):
            outcome = outcome_of(result, 0, torch.__version__, variant)
            assert outcome.final_cost is not None and outcome.last_logged_cost is not None
            step_0 = result.costs[0][1]
            assert [step for step, _ in result.costs] == [0]
            assert outcome.last_logged_cost == step_0
            assert outcome.final_cost != step_0, (engine.name, variant)
            assert same_bits(outcome.final_cost, seed_trained_cost(variant, list(result.hypothesis)))
            if device == "cpu":  # the seed's loop one step longer logs the trained model's cost at step 10
                assert one_step_longer[(seed, lr)][1] == (10, outcome.final_cost), (engine.name, seed, lr)


def test_for_the_seeds_10001_step_run_final_cost_is_the_trained_models_cost() -> None:
    costs, hypothesis, _, _ = run_seed_script("nn", 777, 1.0)  # the seed's own loop, live
    result = train("nn", 777, 1.0)
    outcome = outcome_of(result, 0, torch.__version__, "nn")
    assert outcome.last_logged_cost == costs[-1][1] and costs[-1][0] == 10_000
    assert outcome.final_cost == seed_trained_cost("nn", hypothesis)


def test_run_stores_both_costs_and_every_output_shows_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("XORJOBS_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XORJOBS_DATABASE_URL", raising=False)
    monkeypatch.delenv("XORJOBS_API_URL", raising=False)
    # `run` in its own process, as a user runs it: its in-process Celery worker is built once per
    # process, so a second embedded run inside this pytest process would consume another test's queue.
    ran = subprocess.run(
        [XORJOBS, "run", "--seed", "1,2", "--steps", "10", "--json"],
        env=clean_env(XORJOBS_HOME=str(tmp_path / "home")),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr
    jobs: list[Json] = json.loads(ran.stdout)["jobs"]
    assert len(jobs) == 6
    for job in jobs:
        assert job["last_logged_cost"] == job["costs"][0][1] and job["costs"][0][0] == 0
        assert job["final_cost"] != job["last_logged_cost"]
        assert same_bits(
            job["final_cost"],
            seed_trained_cost(job["variant"], [float(value) for value in job["hypothesis"]]),
        )
    point = plots.job_figure(jobs[0], jobs[0]["costs"]).axes[0].get_lines()[1]  # after the logged curve
    assert np.asarray(point.get_xydata()).tolist() == [[10, jobs[0]["final_cost"]]]
    code, out, _ = run_main(
        ["results", "--sort", "final_cost", "--limit", "1", "--json"], monkeypatch, capsys
    )
    assert code == 0 and json.loads(out)["jobs"][0]["final_cost"] == min(job["final_cost"] for job in jobs)
    code, out, _ = run_main(["results", "--by", "variant", "--json"], monkeypatch, capsys)
    groups = {group["variant"]: group for group in json.loads(out)["groups"]}
    for variant, group in groups.items():
        finals = [job["final_cost"] for job in jobs if job["variant"] == variant]
        assert group["final_cost_mean"] == pytest.approx(sum(finals) / 2, rel=1e-15)


# --- the migration: the old final_cost becomes last_logged_cost; the trained cost is unknown (NULL) ----


def test_revision_0002_keeps_the_old_value_as_last_logged_cost_and_leaves_final_cost_null(
    database_url: str,
) -> None:
    engine = get_engine(database_url)
    with engine.begin() as connection:
        config = alembic_config(database_url)
        config.attributes["connection"] = connection
        command.upgrade(config, "0001")
    now = dt.datetime.now(dt.UTC)
    spec = {"variants": ["nn"], "seeds": [1, 2], "lrs": [1.0], "steps": 10, "log_every": 10, "device": "cpu"}
    sweeps = sa.table(
        "sweeps", *(sa.column(name) for name in ("id", "name", "created_at", "spec_json", "job_count"))
    )
    common = {
        "sweep_id": "sw-old", "variant": "nn", "lr": 1.0, "steps": 10, "log_every": 10, "device": "cpu",
        "queue": "cpu", "state": "succeeded", "attempt": 1, "attempts_forgiven": 0, "created_at": now,
        "started_at": now, "finished_at": now, "hypothesis_json": "[0.5, 0.5, 0.5, 0.5]",
        "predicted_json": "[0.0, 0.0, 0.0, 0.0]", "accuracy": 0.5,
    }  # fmt: skip
    extra = ("id", "position", "seed", "final_cost", "final_cost_kind")
    jobs = sa.table("jobs", *(sa.column(name) for name in (*common, *extra)))
    with engine.begin() as connection:
        connection.execute(
            sa.insert(sweeps).values(
                id="sw-old", name=None, created_at=now, spec_json=json.dumps(spec), job_count=2
            )
        )
        connection.execute(
            sa.insert(jobs),
            [
                {
                    **common,
                    "id": "job-old-1",
                    "position": 0,
                    "seed": 1,
                    "final_cost": 0.6931,
                    "final_cost_kind": 0,
                },
                {
                    **common,
                    "id": "job-old-2",
                    "position": 1,
                    "seed": 2,
                    "final_cost": None,
                    "final_cost_kind": 1,
                },
            ],
        )
    upgrade(database_url)
    first, second = queries.sweep_status(database_url, "sw-old")["jobs"]
    assert (first["last_logged_cost"], first["final_cost"]) == (0.6931, None)
    assert math.isnan(second["last_logged_cost"]) and second["final_cost"] is None
