"""Cost writes of a 10,000-job sweep (issue 11 §2): rows/s before and after the bulk paths, both stores.

``python -m bench.cost_writes`` creates a 10,000-job sweep (10001 steps, 101 logged costs per job:
1.01 M rows) in a fresh SQLite file and a fresh Postgres database, and writes every job's costs as the
workers do: one transaction per pack of 512 jobs, fenced on the pack's attempts first
(``packs.record_pack_costs``). It times, in the same run, on each store:

1. before: the statement the store used until issue 11, SQLAlchemy Core ``insert().on_conflict_do_update``
   executed with one dict per row (kept here as the baseline);
2. now: ``xorjobs.store.costs.upsert_cost_rows`` (SQLite: one ``executemany`` of tuples; Postgres:
   binary ``COPY`` into a temporary table, then one ``INSERT ... SELECT ... ON CONFLICT``).

Each is timed writing into an empty table (a first attempt) and again over its own rows (a retried
attempt overwriting them), with the costs table emptied in between. Prints rows/s and the ratio
now / before, and writes ``bench/results/cost_writes.json``.
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

from sqlalchemy import Table, delete
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from bench.postgres import fresh_database
from xorjobs.defaults import DEFAULT_LOG_EVERY, DEFAULT_STEPS, cost_points
from xorjobs.spec import SweepSpec
from xorjobs.store.claims import claim_job
from xorjobs.store.costs import upsert_cost_rows
from xorjobs.store.engine import write_session
from xorjobs.store.packs import claim_companions, record_pack_costs
from xorjobs.store.schema import upgrade
from xorjobs.store.sweeps import create_sweep
from xorjobs.store.tables import Cost

RESULTS = Path(__file__).resolve().parent / "results" / "cost_writes.json"
PACK = 512
BEFORE = "before: SQLAlchemy insert().on_conflict_do_update, one dict per row"
NOW = "now: upsert_cost_rows (SQLite executemany of tuples; Postgres COPY + INSERT ... SELECT)"


def upsert_before(session: Session, rows: Sequence[tuple[str, int, float | None, int, int]]) -> None:
    """The path before issue 11 §2, as it was in ``xorjobs/store/costs.py``."""
    dicts = [{"job_id": j, "step": s, "value": v, "kind": k, "attempt": a} for j, s, v, k, a in rows]
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    costs = Cost.__table__
    assert isinstance(costs, Table)
    statement = insert(costs)
    statement = statement.on_conflict_do_update(
        index_elements=[costs.c.job_id, costs.c.step],
        set_={
            "value": statement.excluded.value,
            "kind": statement.excluded.kind,
            "attempt": statement.excluded.attempt,
        },
    )
    session.connection().execute(statement, dicts)


Writer = Callable[[Session, Sequence[tuple[str, int, float | None, int, int]]], None]


def write_all(url: str, packs: list[list[Any]], costs: list[tuple[int, float]], writer: Writer) -> float:
    """Seconds to write every pack's rows, one fenced transaction per pack (as ``record_pack_costs``)."""
    import xorjobs.store.packs as packs_module

    started = time.perf_counter()
    original = packs_module.__dict__["upsert_cost_rows"]
    packs_module.__dict__["upsert_cost_rows"] = writer  # the one seam: the pack's own fenced write
    try:
        for claims in packs:
            lost = record_pack_costs(url, {claim: costs for claim in claims}, lease_seconds=600)
            assert not lost
    finally:
        packs_module.__dict__["upsert_cost_rows"] = original
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
    packs = claimed_packs(url, jobs)
    rng = random.Random(0)
    points = cost_points(DEFAULT_STEPS, DEFAULT_LOG_EVERY)
    costs = [(step * DEFAULT_LOG_EVERY, rng.random()) for step in range(points)]
    costs[-1] = (costs[-1][0], float("nan"))  # a non-finite cost takes its own path in the row
    rows = sum(len(claims) for claims in packs) * points
    result: dict[str, Any] = {"rows": rows}
    for name, writer in ((BEFORE, upsert_before), (NOW, upsert_cost_rows)):
        with write_session(url) as session:
            session.execute(delete(Cost))
        first = write_all(url, packs, costs, writer)
        again = write_all(url, packs, costs, writer)
        result[name] = {"insert_rows_per_s": rows / first, "overwrite_rows_per_s": rows / again}
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
    print(f"\ncost writes, {args.jobs} jobs x 101 costs, packs of {PACK} ({machine})")
    print(f"  {'store / way':<96} {'insert rows/s':>14} {'overwrite rows/s':>17}")
    for store in args.stores:
        for name in (BEFORE, NOW):
            row = report[store][name]
            rates = f"{row['insert_rows_per_s']:>14,.0f} {row['overwrite_rows_per_s']:>17,.0f}"
            print(f"  {store + ': ' + name:<96} {rates}")
        ratio = report[store][NOW]["insert_rows_per_s"] / report[store][BEFORE]["insert_rows_per_s"]
        report[store]["ratio_now_to_before_insert"] = ratio
        print(f"  {store}: now / before (insert): {ratio:.1f}x")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2))
    print(f"  written to {RESULTS}")


if __name__ == "__main__":
    main()
