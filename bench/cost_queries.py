"""Reads of a 10,000-job sweep's costs: every documented query, timed on both stores (issue 15).

``python -m bench.cost_queries`` fills a fresh SQLite file and a fresh Postgres database with a sweep of
10,000 jobs (10001 steps, 101 logged costs per job, a few NaN and infinite), written as the workers
write it: packs of 512, a progress write of the first 50 costs (``packs.record_pack_costs``), then the
rest with the results (``packs.finish_pack``). The last 5 % of the jobs stay running after their progress
write, so the progress and version queries are timed while jobs run; they are then finished and every
read is timed over the whole sweep:

- one job's costs (``queries.job_costs``, per call, over 200 jobs), ``queries.sweep_results`` (whole,
  filtered to one lr, top 10 by final cost), ``queries.costs_by_job``, ``export.curves_by_job``;
- the export (``export.export_text``, CSV and JSON lines, consumed to the end), the summary and the
  sweep plot (``Service.summary``, ``Service.sweep_plot``, as the CLI and the API call them);
- ``queries.sweep_status`` and ``versions.sweep_version`` while jobs run and once all have finished,
  ``progress.sweep_progress`` alone, ``housekeeping.prune_sweeps(dry_run=True)``, then one real
  ``housekeeping.delete_sweep``.

The store is filled through functions whose signatures do not depend on how costs are laid out (no cost
table is named here), so the same file measures the store before and after a change of layout. Each
query runs ``--repeats`` times (best and median reported); its last output is reduced to a digest keyed
by job position, not id (ids are random), so two runs on two layouts can be compared for equal output.
Also recorded: the store's size on disk and the cost tables found (``costs``: one row per logged step;
``cost_curves``: one row per job). Prints a table and writes ``bench/results/cost_queries.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import math
import os
import platform
import random
import sqlite3
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy
from sqlalchemy import text
from sqlalchemy.engine import make_url

from bench.postgres import fresh_database
from xorjobs.defaults import DEFAULT_LOG_EVERY, DEFAULT_STEPS, cost_points
from xorjobs.export_formats import ExportFormat
from xorjobs.filters import JobFilter, JobOrder
from xorjobs.service import Service
from xorjobs.settings import Settings
from xorjobs.spec import SweepSpec
from xorjobs.store import housekeeping, queries
from xorjobs.store.claims import Claim, claim_job
from xorjobs.store.engine import read_session
from xorjobs.store.export import curves_by_job, export_text
from xorjobs.store.packs import claim_companions, finish_pack, record_pack_costs
from xorjobs.store.progress import sweep_progress
from xorjobs.store.results import Outcome
from xorjobs.store.schema import upgrade
from xorjobs.store.sweeps import create_sweep
from xorjobs.store.versions import sweep_version

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "cost_queries.json"
PACK = 512
LRS = (0.1, 0.5, 1.0, 5.0)
PROGRESS_POINTS = 50
"""Costs of every job's progress write; the running jobs stop there, the others finish with the rest."""
RUNNING_SHARE = 0.05
"""Of the sweep's jobs left running (500 of 10,000) for the progress and version queries."""
SAMPLED_JOBS = 200
"""Jobs whose costs ``job_costs`` reads one by one (its time is reported per call)."""
LEASE_SECONDS = 3600.0  # nothing reaps here, but a lease that cannot run out keeps the running jobs so
BY = ["variant", "lr"]  # the grouping of ``xorjobs compare`` (its default)
COST_TABLES = ("costs", "cost_curves")
"""The cost tables of either layout: ``costs`` (one row per logged step), ``cost_curves`` (per job)."""

T = TypeVar("T")
Curve = list[tuple[int, float]]


# --- the sweep ------------------------------------------------------------------------------------


def curve_of(position: int, rng: random.Random) -> Curve:
    """The logged costs of the job at ``position``: decaying (slower at small lrs), some never below the
    threshold, and a few non-finite ones: NaN after a blow-up, +inf at one step, one -inf."""
    points = cost_points(DEFAULT_STEPS, DEFAULT_LOG_EVERY)
    rate = (0.002, 0.02, 0.05, 0.1)[position % len(LRS)] * rng.uniform(0.5, 1.5)
    floor = 0.25 if rng.random() < 0.2 else 0.0  # a stuck job: its cost plateaus at 0.25
    costs = [
        (point * DEFAULT_LOG_EVERY, floor + (0.3 - floor) * math.exp(-rate * point) * rng.uniform(0.9, 1.1))
        for point in range(points)
    ]
    if position % 997 == 3:  # diverged: NaN from a logged step on
        start = rng.randrange(10, points)
        costs[start:] = [(step, math.nan) for step, _ in costs[start:]]
    elif position % 991 == 5:  # one infinite cost, then NaN
        start = rng.randrange(10, points - 1)
        costs[start] = (costs[start][0], math.inf)
        costs[start + 1 :] = [(step, math.nan) for step, _ in costs[start + 1 :]]
    elif position == 7:
        costs[50] = (costs[50][0], -math.inf)
    return costs


def outcome_of(curve: Curve, rest: Sequence[tuple[int, float]]) -> Outcome:
    """The result a worker stores with the costs ``rest`` it had not yet written."""
    last = curve[-1][1]
    solved = math.isfinite(last) and last < 0.05
    return Outcome(
        unwritten_costs=rest,
        final_cost=last * 0.99 if math.isfinite(last) else last,
        hypothesis=[0.01, 0.98, 0.97, 0.02] if solved else [0.5, 0.5, 0.5, 0.5],
        predicted=[0.0, 1.0, 1.0, 0.0] if solved else [0.0, 0.0, 1.0, 1.0],
        accuracy=1.0 if solved else 0.5,
        device_name="bench",
        cpu_capability="bench",
        torch_version="bench",
        last_logged_cost=last,
        engine="native",
        steps_trained=DEFAULT_STEPS,
    )


def claimed_packs(url: str, job_ids: Sequence[str]) -> list[list[Claim]]:
    """Claim the whole sweep in packs of ``PACK``, as workers do: a leader, then its companions."""
    taken: set[str] = set()
    packs: list[list[Claim]] = []
    for job_id in job_ids:
        if job_id in taken:
            continue
        leader = claim_job(url, job_id, "bench", lease_seconds=LEASE_SECONDS, max_attempts=3)
        assert leader is not None
        companions = claim_companions(
            url, leader, "bench", lease_seconds=LEASE_SECONDS, max_attempts=3, limit=PACK - 1
        )
        pack = [leader, *companions]
        taken.update(claim.job_id for claim in pack)
        packs.append(pack)
    return packs


def chunks(items: Sequence[T], size: int) -> Iterable[Sequence[T]]:
    return (items[start : start + size] for start in range(0, len(items), size))


class Sweep:
    """The sweep in the store, and what the bench knows of it (positions, curves, running claims)."""

    def __init__(self, url: str, jobs: int) -> None:
        spec = SweepSpec(
            variants=["nn"], seeds=list(range(jobs // len(LRS))), lrs=list(LRS), steps=DEFAULT_STEPS
        )
        created = create_sweep(url, spec)
        self.url = url
        self.sweep_id = created.sweep_id
        self.ids = [job.job_id for job in created.jobs]  # in expansion order: index = position
        self.position = {job_id: index for index, job_id in enumerate(self.ids)}
        rng = random.Random(0)
        self.curves = [curve_of(position, rng) for position in range(len(self.ids))]
        self.claims = [claim for pack in claimed_packs(url, self.ids) for claim in pack]
        running = round(len(self.claims) * RUNNING_SHARE)
        self.finished, self.running = self.claims[: len(self.claims) - running], self.claims[-running:]

    def curve(self, claim: Claim) -> Curve:
        return self.curves[self.position[claim.job_id]]

    def progress_writes(self, claims: Sequence[Claim]) -> None:
        for pack in chunks(claims, PACK):
            lost = record_pack_costs(
                self.url, {claim: self.curve(claim)[:PROGRESS_POINTS] for claim in pack}, LEASE_SECONDS
            )
            assert not lost

    def finishes(self, claims: Sequence[Claim]) -> None:
        for pack in chunks(claims, PACK):
            outcomes = {
                claim: outcome_of(self.curve(claim), self.curve(claim)[PROGRESS_POINTS:]) for claim in pack
            }
            assert not finish_pack(self.url, outcomes, {})


# --- measuring ------------------------------------------------------------------------------------


def timed(call: Callable[[], T], repeats: int) -> tuple[dict[str, Any], T]:
    """Run ``call`` ``repeats`` times: best, median and every run's seconds, and the last output."""
    runs: list[float] = []
    output: T | None = None
    for _ in range(repeats):
        started = time.perf_counter()
        output = call()
        runs.append(time.perf_counter() - started)
    assert output is not None
    return {"best_s": min(runs), "median_s": statistics.median(runs), "runs_s": runs}, output


def exported(url: str, sweep_id: str, export_format: ExportFormat) -> list[str]:
    """The streamed export read to its end, as a client would; its chunks are kept (not joined) for the
    check afterwards, so no second export is needed and the timing includes no extra work."""
    return list(export_text(url, sweep_id, export_format))


def digest(lines: Iterable[str]) -> str:
    hasher = hashlib.sha256()
    hasher.update("\n".join(lines).encode())
    return hasher.hexdigest()[:16]


def curves_digest(sweep: Sweep, curves: Mapping[str, Sequence[Sequence[Any]]]) -> dict[str, Any]:
    """The costs job by job in position order, as text with positions for ids: equal outputs, equal digest."""
    ordered = sorted(curves.items(), key=lambda item: sweep.position[item[0]])
    lines = (
        f"{sweep.position[job_id]}:{step}:{float(cost)!r}"
        for job_id, curve in ordered
        for step, cost in curve
    )
    return {
        "jobs": len(curves),
        "costs": sum(len(curve) for curve in curves.values()),
        "digest": digest(lines),
    }


def export_digest(sweep: Sweep, export_format: ExportFormat, chunks_of_text: Sequence[str]) -> dict[str, Any]:
    """The export's lines with each job id replaced by its position (ids are random)."""
    lines = [line for chunk in chunks_of_text for line in chunk.splitlines()]
    if export_format == ExportFormat.CSV:
        rows = (row.split(",", 1) for row in lines[1:])
        keyed = [lines[0]] + [f"{sweep.position[job_id]},{rest}" for job_id, rest in rows]
    else:
        prefix = len('{"job_id": "')
        keyed = [
            f"{sweep.position[job_id]}{rest}"
            for job_id, rest in (line[prefix:].split('"', 1) for line in lines)
        ]
    return {
        "characters": sum(len(chunk) for chunk in chunks_of_text),
        "lines": len(lines),
        "digest": digest(keyed),
    }


def results_digest(sweep: Sweep, results: Mapping[str, Any]) -> dict[str, Any]:
    curves = {job["id"]: job["costs"] for job in results["jobs"]}
    return {"counts": results["counts"], **curves_digest(sweep, curves)}


def summary_digest(summary: Mapping[str, Any]) -> str:
    summary = {key: value for key, value in summary.items() if key != "sweep_id"}
    return digest([json.dumps(summary, sort_keys=True, default=str)])


def vacuum_analyze(url: str) -> None:
    """Postgres: the planner's statistics and the visibility map as autovacuum would leave them after a
    sweep is written, now rather than at a random moment during the timings (SQLite: nothing to do)."""
    if make_url(url).get_backend_name() != "postgresql":
        return
    engine = sqlalchemy.create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            connection.execute(text("VACUUM ANALYZE"))
    finally:
        engine.dispose()


def store_size(url: str) -> dict[str, Any]:
    """The cost tables present (which layout this is) and their size; SQLite: the file's bytes too."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        path = Path(parsed.database or "")
        with sqlite3.connect(path) as connection:
            connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            tables = [
                row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            ]
            try:
                # Every table's and index's pages, by name (needs the dbstat table, compiled in most builds).
                pages = dict(
                    connection.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name").fetchall()
                )
            except sqlite3.OperationalError:
                pages = {}
            indexes = connection.execute(
                "SELECT name, tbl_name FROM sqlite_master WHERE type = 'index'"
            ).fetchall()
        wal = path.with_name(path.name + "-wal")
        sizes: dict[str, Any] = {
            "file_bytes": path.stat().st_size,
            "wal_bytes": wal.stat().st_size if wal.exists() else 0,
        }
        sizes["total_bytes"] = sizes["file_bytes"] + sizes["wal_bytes"]
        for table in [name for name in COST_TABLES if name in tables]:
            if pages:
                owned = [table] + [name for name, owner in indexes if owner == table]
                sizes[f"{table}_bytes"] = sum(pages.get(name, 0) for name in owned)
        return {"cost_tables": [name for name in COST_TABLES if name in tables], **sizes}
    with read_session(url) as session:
        tables = list(
            session.scalars(
                text("SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()")
            )
        )
        sizes = {"database_bytes": session.scalar(text("SELECT pg_database_size(current_database())"))}
        for table in [name for name in (*COST_TABLES, "jobs") if name in tables]:
            sizes[f"{table}_total_bytes"] = session.scalar(text(f"SELECT pg_total_relation_size('{table}')"))
            sizes[f"{table}_heap_bytes"] = session.scalar(text(f"SELECT pg_relation_size('{table}')"))
            sizes[f"{table}_index_bytes"] = session.scalar(text(f"SELECT pg_indexes_size('{table}')"))
    return {"cost_tables": [name for name in COST_TABLES if name in tables], **sizes}


def measure(url: str, jobs: int, repeats: int) -> dict[str, Any]:
    upgrade(url)
    report: dict[str, Any] = {"populate_s": {}, "queries": {}, "checks": {}}
    times, checks, populate = report["queries"], report["checks"], report["populate_s"]

    started = time.perf_counter()
    sweep = Sweep(url, jobs)
    populate["create_and_claim"] = time.perf_counter() - started
    started = time.perf_counter()
    sweep.progress_writes(sweep.claims)
    populate["progress_writes"] = time.perf_counter() - started
    started = time.perf_counter()
    sweep.finishes(sweep.finished)
    populate["finish_writes"] = time.perf_counter() - started
    vacuum_analyze(url)
    sweep_id = sweep.sweep_id
    report["running_jobs"] = len(sweep.running)

    # While jobs run: what `status --watch`, the dashboard's bars and the API's ETags read.
    times["sweep_status (running)"], status = timed(lambda: queries.sweep_status(url, sweep_id), repeats)
    checks["sweep_status (running)"] = {"counts": status["counts"], "progress": status["progress"]}

    def progress_alone() -> tuple[float, float | None]:
        with read_session(url) as session:
            return sweep_progress(session, sweep_id, status["counts"])

    times["sweep_progress alone (running)"], progress = timed(progress_alone, repeats)
    checks["sweep_progress alone (running)"] = progress[0]
    times["sweep_version (running)"], version = timed(lambda: sweep_version(url, sweep_id), repeats)
    checks["sweep_version (running)"] = (version or "").rsplit("|", 1)[-1]  # the running part

    started = time.perf_counter()
    sweep.finishes(sweep.running)
    populate["finish_running"] = time.perf_counter() - started
    vacuum_analyze(url)
    report["size"] = store_size(url)

    # The whole sweep finished: every read of its costs.
    sampled = sweep.ids[:: max(1, len(sweep.ids) // SAMPLED_JOBS)][:SAMPLED_JOBS]

    def one_by_one() -> list[list[list[Any]]]:
        return [queries.job_costs(url, job_id) for job_id in sampled]

    timing, per_job = timed(one_by_one, repeats)
    times["job_costs (per call)"] = {
        **{key: value / len(sampled) for key, value in timing.items() if key != "runs_s"},
        "runs_s": [value / len(sampled) for value in timing["runs_s"]],
        "calls": len(sampled),
    }
    checks["job_costs (per call)"] = curves_digest(sweep, dict(zip(sampled, per_job, strict=True)))

    times["sweep_results"], results = timed(lambda: queries.sweep_results(url, sweep_id), repeats)
    checks["sweep_results"] = results_digest(sweep, results)
    del results
    one_lr = JobFilter(lrs=(LRS[1],))
    times["sweep_results (lr=0.5)"], results = timed(
        lambda: queries.sweep_results(url, sweep_id, one_lr), repeats
    )
    checks["sweep_results (lr=0.5)"] = results_digest(sweep, results)
    best = JobOrder(sort="final_cost", limit=10)
    times["sweep_results (top 10 final_cost)"], results = timed(
        lambda: queries.sweep_results(url, sweep_id, order=best), repeats
    )
    checks["sweep_results (top 10 final_cost)"] = results_digest(sweep, results)
    del results
    times["costs_by_job"], costs = timed(lambda: queries.costs_by_job(url, sweep_id), repeats)
    checks["costs_by_job"] = curves_digest(sweep, costs)
    del costs
    times["curves_by_job"], curves = timed(lambda: curves_by_job(url, sweep_id), repeats)
    checks["curves_by_job"] = curves_digest(sweep, curves)
    del curves
    for export_format in (ExportFormat.CSV, ExportFormat.JSONL):
        name = f"export {export_format.value}"
        times[name], text_chunks = timed(partial(exported, url, sweep_id, export_format), repeats)
        checks[name] = export_digest(sweep, export_format, text_chunks)
        del text_chunks

    service = Service(Settings(database_url=url))
    times["summary (Service.summary)"], summary = timed(lambda: service.summary(sweep_id, BY), repeats)
    checks["summary (Service.summary)"] = summary_digest(summary)
    times["plot (Service.sweep_plot png)"], png = timed(lambda: service.sweep_plot(sweep_id, BY), repeats)
    checks["plot (Service.sweep_plot png)"] = {"png_bytes": len(png)}
    times["sweep_status (finished)"], status = timed(lambda: queries.sweep_status(url, sweep_id), repeats)
    checks["sweep_status (finished)"] = {"counts": status["counts"], "progress": status["progress"]}
    times["sweep_version (finished)"], version = timed(lambda: sweep_version(url, sweep_id), repeats)

    # Housekeeping: a cutoff of now makes the finished sweep old enough to prune.
    times["prune_sweeps (dry run)"], pruned = timed(
        lambda: housekeeping.prune_sweeps(url, older_than=dt.timedelta(0), dry_run=True), repeats
    )
    checks["prune_sweeps (dry run)"] = [{"jobs": item.jobs, "costs": item.costs} for item in pruned]
    times["delete_sweep (once)"], deleted = timed(lambda: housekeeping.delete_sweep(url, sweep_id), 1)
    checks["delete_sweep (once)"] = {"jobs": deleted.jobs, "costs": deleted.costs}
    return report


# --- the report -----------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": cpu,
        "nproc": os.cpu_count(),
    }


def git(*args: str) -> str:
    try:
        return subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def layout(tables: Sequence[str]) -> str:
    found = [name for name, table in (("rows", "costs"), ("curves", "cost_curves")) if table in tables]
    return "+".join(found) or "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--jobs", type=int, default=10_000, help="jobs in the sweep (a multiple of 4)")
    parser.add_argument("--stores", nargs="+", default=["sqlite,postgres"], help="sqlite, postgres or both")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each query (best and median)")
    parser.add_argument("--label", default="", help="a name for this run, kept in the JSON")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    stores = [store for item in args.stores for store in item.split(",") if store]
    for store in stores:
        if store not in ("sqlite", "postgres"):
            parser.error(f"unknown store {store!r}: use sqlite, postgres or sqlite,postgres")
    # "XY path" lines; git() strips the output, so the first line may have lost its leading space.
    xorjobs_changes = [
        line.split(maxsplit=1)[1] for line in git("status", "--porcelain", "--", "xorjobs").splitlines()
    ]
    report: dict[str, Any] = {
        "label": args.label,
        "commit": git("rev-parse", "HEAD"),
        "uncommitted_xorjobs_files": xorjobs_changes,
        "machine": machine(),
        "jobs": args.jobs,
        "costs_per_job": cost_points(DEFAULT_STEPS, DEFAULT_LOG_EVERY),
        "repeats": args.repeats,
        "stores": {},
    }
    for store in stores:
        if store == "sqlite":
            with tempfile.TemporaryDirectory(prefix="xorjobs-bench-queries-") as folder:
                report["stores"][store] = measure(
                    f"sqlite:///{Path(folder) / 'costs.db'}", args.jobs, args.repeats
                )
        else:
            with fresh_database() as url:
                report["stores"][store] = measure(url, args.jobs, args.repeats)
        report["stores"][store]["layout"] = layout(report["stores"][store]["size"]["cost_tables"])
    layouts = sorted({result["layout"] for result in report["stores"].values()})
    report["layout"] = "/".join(layouts)

    cpu = report["machine"]
    print(
        f"\ncost queries, {args.jobs} jobs x {report['costs_per_job']} costs, "
        f"best and median of {args.repeats}"
    )
    print(f"  layout {report['layout']}, commit {report['commit'][:12]}, {cpu['cpu']}, {cpu['nproc']} cores")
    print(f"  {'query':<36} {'store':<9} {'best s':>10} {'median s':>10}")
    for store in stores:
        for name, figures in report["stores"][store]["queries"].items():
            print(f"  {name:<36} {store:<9} {figures['best_s']:>10.4f} {figures['median_s']:>10.4f}")
    for store in stores:
        result = report["stores"][store]
        populate = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in result["populate_s"].items())
        print(f"  {store} populate: {populate}")
        sizes = ", ".join(
            f"{name} {value:,}" for name, value in result["size"].items() if name != "cost_tables"
        )
        print(f"  {store} size ({result['layout']}): {sizes}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2))
    print(f"  written to {args.output}")


if __name__ == "__main__":
    main()
