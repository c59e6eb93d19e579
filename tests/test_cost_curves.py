"""Cost curves stored as one value per job (revision 0007, issue 11 §2): the codec, the merge of chunks
and attempts, and the migration that converts a store of per-step rows (and back)."""

from __future__ import annotations

import datetime as dt
import json
import math
import struct

import pytest
import sqlalchemy as sa
from alembic import command

from xorjobs.spec import SweepSpec
from xorjobs.store import queries
from xorjobs.store.claims import claim_job
from xorjobs.store.costs import record_costs
from xorjobs.store.curve_codec import decode_curve, encode_curve, merge_points, point_count
from xorjobs.store.engine import get_engine, read_session
from xorjobs.store.export import curves_by_job
from xorjobs.store.schema import alembic_config, upgrade
from xorjobs.store.sweeps import create_sweep
from xorjobs.store.tables import CostCurve

NAN, INF = math.nan, math.inf


def same_points(left: list[tuple[int, float]], right: list[tuple[int, float]]) -> bool:
    """Equal step for step, NaN equal to NaN, and bit for bit (so -0.0 differs from 0.0)."""
    return len(left) == len(right) and all(
        (a[0] == b[0] and struct.pack("<d", a[1]) == struct.pack("<d", b[1]))
        or (a[0] == b[0] and math.isnan(a[1]) and math.isnan(b[1]))
        for a, b in zip(left, right, strict=True)
    )


# --- the codec: pure functions ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "points",
    [
        [],
        [(0, 0.7319304943084717)],
        [(0, 0.7), (100, NAN), (200, INF), (300, -INF), (400, -0.0), (500, 5e-324), (999_999, 1e308)],
        [(step, 1.0 / (step + 1)) for step in range(0, 1_000_001, 100)],
    ],
)
def test_a_curve_decodes_to_exactly_what_was_encoded(points: list[tuple[int, float]]) -> None:
    blob = encode_curve(points)
    assert point_count(blob) == len(points)
    assert same_points(decode_curve(blob), points)


def test_the_layout_is_the_documented_one_so_any_reader_can_decode_it() -> None:
    blob = encode_curve([(0, 0.5), (100, NAN)])
    assert blob[0] == 1  # format version
    assert struct.unpack("<2i", blob[1:9]) == (0, 100)
    assert struct.unpack("<d", blob[9:17]) == (0.5,) and math.isnan(struct.unpack("<d", blob[17:25])[0])
    assert len(blob) == 1 + 2 * 12


@pytest.mark.parametrize("blob", [b"", b"\x02" + bytes(12), b"\x01" + bytes(11)])
def test_bytes_that_are_not_a_curve_are_refused_by_name(blob: bytes) -> None:
    with pytest.raises(ValueError, match="not a stored cost curve"):
        decode_curve(blob)


def test_a_later_chunk_is_appended_and_a_chunk_sent_again_changes_nothing() -> None:
    first = [(0, 0.7), (100, 0.6)]
    later = [(200, 0.5), (300, 0.4)]
    both = merge_points(first, later)
    assert both == [*first, *later]
    assert merge_points(both, later) == both  # its first write committed; the worker sent it again
    assert merge_points(both, [(100, 0.9)]) == [(0, 0.7), (100, 0.9), (200, 0.5), (300, 0.4)]
    assert merge_points([], [(100, 0.1), (0, 0.2)]) == [(0, 0.2), (100, 0.1)]  # kept in step order


# --- writes through the store: chunks merge per step, a new attempt replaces the curve ------------------


def stored_curve(url: str, job_id: str) -> tuple[int, int, int, list[tuple[int, float]]] | None:
    with read_session(url) as session:
        row = session.get(CostCurve, job_id)
        if row is None:
            return None
        return row.attempt, row.points, row.last_step, decode_curve(row.curve)


def test_chunks_of_one_attempt_merge_and_a_new_attempt_starts_the_curve_again(database_url: str) -> None:
    upgrade(database_url)
    spec = SweepSpec(variants=["nn"], seeds=[1], lrs=[1.0], steps=1000, log_every=100)
    sweep = create_sweep(database_url, spec)
    job_id = sweep.jobs[0].job_id
    first = claim_job(database_url, job_id, "w1", lease_seconds=60, max_attempts=5)
    assert first is not None
    record_costs(database_url, job_id, first.attempt, [(0, 0.7), (100, NAN)], 60)
    record_costs(database_url, job_id, first.attempt, [(100, NAN), (200, INF)], 60)  # 100 sent again
    attempt, points, last_step, curve = stored_curve(database_url, job_id) or (0, 0, 0, [])
    assert (attempt, points, last_step) == (first.attempt, 3, 200)
    assert same_points(curve, [(0, 0.7), (100, NAN), (200, INF)])
    assert same_points([(step, cost) for step, cost in queries.job_costs(database_url, job_id)], curve)
    assert same_points(curves_by_job(database_url, sweep.sweep_id)[job_id], curve)

    # The lease runs out; another worker claims it again and logs from step 0.
    with get_engine(database_url).begin() as connection:
        connection.execute(sa.text("UPDATE jobs SET state = 'queued', lease_expires_at = NULL"))
    second = claim_job(database_url, job_id, "w2", lease_seconds=60, max_attempts=5)
    assert second is not None and second.attempt > first.attempt
    record_costs(database_url, job_id, second.attempt, [(0, 0.25)], 60)
    assert stored_curve(database_url, job_id) == (second.attempt, 1, 0, [(0, 0.25)])


# --- the migration: a store of per-step rows becomes curves, and back --------------------------------


def test_revision_0007_converts_every_row_into_curves_and_the_downgrade_gives_them_back(
    database_url: str,
) -> None:
    engine = get_engine(database_url)
    config = alembic_config(database_url)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0006")
    now = dt.datetime.now(dt.UTC)
    spec = {
        "variants": ["nn"],
        "seeds": [1, 2, 3],
        "lrs": [1.0],
        "steps": 300,
        "log_every": 100,
        "device": "cpu",
    }
    sweeps = sa.table(
        "sweeps", *(sa.column(n) for n in ("id", "name", "created_at", "spec_json", "job_count"))
    )
    job_columns = ("id", "sweep_id", "position", "variant", "seed", "lr", "steps", "log_every", "device",
                   "queue", "state", "attempt", "attempts_forgiven", "created_at")  # fmt: skip
    jobs = sa.table("jobs", *(sa.column(name) for name in job_columns))
    costs = sa.table("costs", *(sa.column(n) for n in ("job_id", "step", "value", "kind", "attempt")))
    # Job 1: finite, NaN (kind 1), inf (2) and -inf (3), in the rows' encoding (NULL value + kind).
    # Job 2: rows of two attempts (its third attempt reached step 100, the second's step 200 stayed).
    # Job 3: no rows at all.
    rows = [
        ("job-a", 0, 0.7319304943084717, 0, 1), ("job-a", 100, None, 1, 1),
        ("job-a", 200, None, 2, 1), ("job-a", 300, None, 3, 1),
        ("job-b", 0, 0.5, 0, 3), ("job-b", 100, 0.25, 0, 3), ("job-b", 200, 0.125, 0, 2),
    ]  # fmt: skip
    with engine.begin() as connection:
        connection.execute(
            sa.insert(sweeps).values(
                id="sw-old", name=None, created_at=now, spec_json=json.dumps(spec), job_count=3
            )
        )
        connection.execute(
            sa.insert(jobs),
            [
                {"id": job_id, "sweep_id": "sw-old", "position": position, "variant": "nn",
                 "seed": position + 1, "lr": 1.0, "steps": 300, "log_every": 100, "device": "cpu",
                 "queue": "cpu", "state": "succeeded", "attempt": 3, "attempts_forgiven": 0,
                 "created_at": now}
                for position, job_id in enumerate(("job-a", "job-b", "job-c"))
            ],
        )  # fmt: skip
        connection.execute(
            sa.insert(costs),
            [dict(zip(("job_id", "step", "value", "kind", "attempt"), r, strict=True)) for r in rows],
        )

    upgrade(database_url)

    job_a = stored_curve(database_url, "job-a")
    assert job_a is not None and job_a[:3] == (1, 4, 300)
    assert same_points(job_a[3], [(0, 0.7319304943084717), (100, NAN), (200, INF), (300, -INF)])
    assert same_points([(step, cost) for step, cost in queries.job_costs(database_url, "job-a")], job_a[3])
    assert stored_curve(database_url, "job-b") == (3, 3, 200, [(0, 0.5), (100, 0.25), (200, 0.125)])
    assert stored_curve(database_url, "job-c") is None and queries.job_costs(database_url, "job-c") == []
    assert set(queries.costs_by_job(database_url, "sw-old")) == {"job-a", "job-b"}
    assert "costs" not in sa.inspect(engine).get_table_names()

    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0006")
    with engine.connect() as connection:
        back = connection.execute(
            sa.select(costs.c.job_id, costs.c.step, costs.c.value, costs.c.kind, costs.c.attempt).order_by(
                costs.c.job_id, costs.c.step
            )
        ).all()
    # Every row again, in the rows' encoding; job-b's rows all carry the attempt its curve kept.
    assert [tuple(row) for row in back] == [
        *rows[:4],
        ("job-b", 0, 0.5, 0, 3),
        ("job-b", 100, 0.25, 0, 3),
        ("job-b", 200, 0.125, 0, 3),
    ]
    assert "cost_curves" not in sa.inspect(engine).get_table_names()
