"""Cost writes of a 10,000-job sweep (issue 11 §2): logged costs/s as rows and as curves, both stores.

``python -m bench.cost_writes`` creates a 10,000-job sweep (10001 steps, 101 logged costs per job:
1.01 M costs) in a fresh SQLite file and a fresh Postgres database, and writes every job's costs as the
workers do: one transaction per pack of 512 jobs, fenced on the pack's attempts first
(``packs.record_pack_costs``). It times, in the same run, on each store:

1. rows: the layout until revision 0007, one row per logged cost (primary key job and step), written
   the fastest way it had (SQLite one ``executemany`` of tuples; Postgres binary ``COPY`` and one
   ``INSERT ... SELECT ... ON CONFLICT``), into a table of that layout this bench creates beside the
   store's own (kept here as the baseline);
2. curves: ``xorjobs.store.costs.write_costs``, one ``cost_curves`` row per job, the same bulk paths.

Each is timed writing into an empty table (a first attempt) and again over its own rows (the same attempt
writing the same costs again, which a curve merges per step), with the tables emptied in between. Prints
logged costs/s and the ratio curves / rows, and writes ``bench/results/cost_writes.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import delete
from sqlalchemy.orm import Session

from bench.postgres import fresh_database
from xorjobs.defaults import DEFAULT_LOG_EVERY, DEFAULT_STEPS, cost_points
from xorjobs.spec import SweepSpec
from xorjobs.store.bulk_upsert import BulkUpsert, bulk_upsert
from xorjobs.store.claims import claim_job
from xorjobs.store.costs import CostChunk, write_costs
from xorjobs.store.engine import write_session
from xorjobs.store.floats import encode_float
from xorjobs.store.packs import claim_companions, record_pack_costs
from xorjobs.store.schema import upgrade
from xorjobs.store.sweeps import create_sweep
from xorjobs.store.tables import CostCurve

RESULTS = Path(__file__).resolve().parent / "results" / "cost_writes.json"
PACK = 512
ROWS = "rows: one row per logged cost (the layout until 0007), executemany / COPY"
CURVES = "curves: write_costs, one cost_curves row per job (0007), executemany / COPY"

_ROWS_TABLE = (
    "CREATE TABLE IF NOT EXISTS bench_cost_rows (job_id VARCHAR(40) NOT NULL REFERENCES jobs (id) "
    "ON DELETE CASCADE, step INTEGER NOT NULL, value DOUBLE PRECISION, kind SMALLINT NOT NULL, "
    "attempt INTEGER NOT NULL, PRIMARY KEY (job_id, step))"
)
"""Revision 0001's ``costs`` table, under a name of the bench's own."""
_ROW_UPSERT = BulkUpsert(
    sqlite=(
        "INSERT INTO bench_cost_rows (job_id, step, value, kind, attempt) VALUES (?, ?, ?, ?, ?) "
        "ON CONFLICT (job_id, step) DO UPDATE "
        "SET value = excluded.value, kind = excluded.kind, attempt = excluded.attempt"
    ),
    pg_staging=(
        "CREATE TEMPORARY TABLE IF NOT EXISTS bench_cost_rows_in (LIKE bench_cost_rows) ON COMMIT DELETE ROWS"
    ),
    pg_copy="COPY bench_cost_rows_in (job_id, step, value, kind, attempt) FROM STDIN (FORMAT BINARY)",
    pg_copy_types=("varchar", "int4", "float8", "int2", "int4"),
    pg_upsert=(
        "INSERT INTO bench_cost_rows (job_id, step, value, kind, attempt) "
        "SELECT job_id, step, value, kind, attempt FROM bench_cost_rows_in "
        "ON CONFLICT (job_id, step) DO UPDATE "
        "SET value = excluded.value, kind = excluded.kind, attempt = excluded.attempt"
    ),
)


def write_rows(session: Session, chunks: Sequence[CostChunk]) -> None:
    """The row layout's write, as ``xorjobs/store/costs.py`` had it before revision 0007."""
    rows = [
        (job_id, step, *encode_float(cost), attempt)
        for job_id, attempt, points in chunks
        for step, cost in points
    ]
    bulk_upsert(session.connection(), _ROW_UPSERT, [(j, s, v, int(k), a) for j, s, v, k, a in rows])


Writer = Callable[[Session, Sequence[CostChunk]], None]


def write_all(url: str, packs: list[list[Any]], costs: list[tuple[int, float]], writer: Writer) -> float:
    """Seconds to write every pack's costs, one fenced transaction per pack (``record_pack_costs``)."""
    import xorjobs.store.packs as packs_module

    started = time.perf_counter()
    original = packs_module.__dict__["write_costs"]
    packs_module.__dict__["write_costs"] = writer  # the one seam: the pack's own fenced write
    try:
        for claims in packs:
            lost = record_pack_costs(url, {claim: costs for claim in claims}, lease_seconds=600)
            assert not lost
    finally:
        packs_module.__dict__["write_costs"] = original
    return time.perf_counter() - started


def claimed_packs(url: str, jobs: int) -> list[list[Any]]:
    """Create the sweep and claim all of it in packs of ``PACK``, as workers do."""
    seeds = list(range(jobs // 4))
    create_sweep(url, SweepSpec(variants=["nn"], seeds=seeds, lrs=[0.1, 0.5, 1.0, 5.0], steps=DEFAULT_STEPS))
    packs: list[list[Any]] = []
    while True:
        leader = claim_job_any(url)
        if leader is None:
            return packs
        companions = claim_companions(url, leader, "bench", lease_seconds=600, max_attempts=3, limit=PACK - 1)
        packs.append([leader, *companions])


def claim_job_any(url: str) -> Any:
    from sqlalchemy import select

    from xorjobs.store.engine import read_session
    from xorjobs.store.tables import Job, JobState

    with read_session(url) as session:
        job_id = session.execute(
            select(Job.id).where(Job.state == JobState.QUEUED).order_by(Job.position).limit(1)
        ).scalar()
    return None if job_id is None else claim_job(url, job_id, "bench", lease_seconds=600, max_attempts=3)


def measure(url: str, jobs: int) -> dict[str, Any]:
    upgrade(url)
    with write_session(url) as session:
        session.connection().exec_driver_sql(_ROWS_TABLE)
    packs = claimed_packs(url, jobs)
    rng = random.Random(0)
    points = cost_points(DEFAULT_STEPS, DEFAULT_LOG_EVERY)
    costs = [(step * DEFAULT_LOG_EVERY, rng.random()) for step in range(points)]
    costs[-1] = (costs[-1][0], float("nan"))  # a non-finite cost takes its own path in a row
    logged = sum(len(claims) for claims in packs) * points
    result: dict[str, Any] = {"logged_costs": logged}
    for name, writer in ((ROWS, write_rows), (CURVES, write_costs)):
        with write_session(url) as session:
            session.execute(delete(CostCurve))
            session.connection().exec_driver_sql("DELETE FROM bench_cost_rows")
        first = write_all(url, packs, costs, writer)
        again = write_all(url, packs, costs, writer)
        result[name] = {"insert_costs_per_s": logged / first, "overwrite_costs_per_s": logged / again}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--stores", nargs="+", default=["sqlite", "postgres"])
    args = parser.parse_args()
    report: dict[str, Any] = {"machine": platform.processor() or platform.machine(), "cores": os.cpu_count()}
    for store in args.stores:
        if store == "sqlite":
            with tempfile.TemporaryDirectory(prefix="xorjobs-bench-costs-") as folder:
                report[store] = measure(f"sqlite:///{Path(folder) / 'costs.db'}", args.jobs)
        else:
            with fresh_database() as url:
                report[store] = measure(url, args.jobs)
    machine = f"{report['machine']}, {os.cpu_count()} cores"
    print(f"\ncost writes, {args.jobs} jobs x 101 logged costs, packs of {PACK} ({machine})")
    print(f"  {'store / layout':<90} {'insert costs/s':>15} {'again costs/s':>14}")
    for store in args.stores:
        for name in (ROWS, CURVES):
            row = report[store][name]
            rates = f"{row['insert_costs_per_s']:>15,.0f} {row['overwrite_costs_per_s']:>14,.0f}"
            print(f"  {store + ': ' + name:<90} {rates}")
        for way in ("insert", "overwrite"):
            key = f"{way}_costs_per_s"
            ratio = report[store][CURVES][key] / report[store][ROWS][key]
            report[store][f"ratio_curves_to_rows_{way}"] = ratio
            print(f"  {store}: curves / rows ({way}): {ratio:.1f}x")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2))
    print(f"  written to {RESULTS}")


if __name__ == "__main__":
    main()
