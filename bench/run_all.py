"""The benchmark of issue 6: the seed's loop against xorjobs, solo and packed, on the same jobs.

``make bench`` (or ``python -m bench.run_all``) runs, for sweeps of 1,000 jobs of nn and of wide_deep
(250 seeds × 4 learning rates, 10001 steps), in one run on this machine:

1. the seed's own loop, sequentially (a sample of jobs, timed and scaled to the sweep), and one process
   per core (what a user would script);
2. xorjobs solo: CLI -> API -> Redis -> Celery workers -> SQLite with packing off (a sample, scaled);
3. xorjobs packed: the same stack with packing on, the whole sweep;
4. the packed trainer alone (no queue, no store), split over the same number of processes: the ceiling.

It prints a table, writes ``bench/results/bench.json``, reports ratios to the sequential seed loop
measured in the same run (not absolute seconds), the share of the packed stack's wall time spent outside
training, peak memory per worker process, a single job's latency, and checks that stored results of
sampled jobs equal the seed loop's output bit for bit. All training is single-threaded (torch threads =
1), the seed loop included, which makes the baseline faster and the ratios conservative.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import platform
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from bench.postgres import fresh_database
from bench.stack import running_stack
from xorjobs.defaults import DEFAULT_STEPS
from xorjobs.settings import Settings
from xorjobs.store import queries
from xorjobs.testing.seed_scripts import run_seed_script

RESULTS = Path(__file__).resolve().parent / "results" / "bench.json"
STEPS = DEFAULT_STEPS
LRS = (0.1, 0.5, 1.0, 5.0)
TARGETS = {"nn": 300.0, "wide_deep": 100.0}
"""Issue 6's targets for the 1,000-job sweeps; ``LARGE_TARGETS`` are issue 11's for the 10,000-job ones."""
PACKED = "xorjobs packed: CLI->API->Redis->workers->SQLite (whole sweep)"
NATIVE_ALONE = "native trainer alone, no queue or store (whole sweep)"
LARGE_TARGETS = {"nn": 5000.0, "wide_deep": 1500.0}


def sweep_jobs(seeds: int) -> list[tuple[int, float]]:
    """The sweep's (seed, lr) pairs in expansion order: seed, then lr."""
    return [(seed, lr) for seed in range(seeds) for lr in LRS]


def _seed_loop_worker(args: tuple[str, list[tuple[int, float]]]) -> list[Any]:
    torch.set_num_threads(1)
    variant, jobs = args
    return [run_seed_script(variant, seed, lr, STEPS) for seed, lr in jobs]


def time_seed_loop(variant: str, sample: list[tuple[int, float]], processes: int) -> tuple[float, list[Any]]:
    """Wall seconds for ``sample`` split over ``processes`` processes, and the outputs in order."""
    chunks = [sample[index::processes] for index in range(processes)]
    started = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        outputs = pool.map(_seed_loop_worker, [(variant, chunk) for chunk in chunks])
    wall = time.perf_counter() - started
    ordered: list[Any] = [None] * len(sample)
    for index, chunk_output in enumerate(outputs):
        for position, output in enumerate(chunk_output):
            ordered[index + position * processes] = output
    return wall, ordered


def _packed_worker(args: tuple[str, list[tuple[int, float]]]) -> float:
    from xorjobs.models.packed import train_packed

    variant, jobs = args
    started = time.perf_counter()
    train_packed(variant, [seed for seed, _ in jobs], [lr for _, lr in jobs], steps=STEPS)
    return time.perf_counter() - started


def _warm_packed_worker(variant: str) -> None:
    """Pool initializer: import torch and measure the BLAS trees (what a worker does once at start)."""
    from xorjobs.models.packed import train_packed

    train_packed(variant, [0], [1.0], steps=2)


def _hold(seconds: float) -> None:
    time.sleep(seconds)


def time_packed_alone(variant: str, jobs: list[tuple[int, float]], processes: int, pack_size: int) -> float:
    """Wall seconds for the packed trainer alone, packs of ``pack_size`` spread over ``processes``
    already started and warm (as the stack's workers are when the sweep arrives)."""
    packs = [jobs[start : start + pack_size] for start in range(0, len(jobs), pack_size)]
    context = multiprocessing.get_context("spawn")
    with context.Pool(processes, initializer=_warm_packed_worker, initargs=(variant,)) as pool:
        # One long task per process: each has finished its initializer before the clock starts.
        pool.map(_hold, [1.0] * processes, chunksize=1)
        started = time.perf_counter()
        pool.map(_packed_worker, [(variant, pack) for pack in packs], chunksize=1)
        return time.perf_counter() - started


def _native_worker(args: tuple[str, list[tuple[int, float]]]) -> float:
    from xorjobs.models.engines import NATIVE

    variant, jobs = args
    started = time.perf_counter()
    NATIVE.train(variant, [seed for seed, _ in jobs], [lr for _, lr in jobs], steps=STEPS)
    return time.perf_counter() - started


def _warm_native_worker(variant: str) -> None:
    """Pool initializer: what a worker does once at start for the native engine (its self-check)."""
    from xorjobs.models.engines import NATIVE

    torch.set_num_threads(1)
    assert NATIVE.self_check(variant, "cpu", 20), f"the native self-check fails for {variant} here"


def time_native_alone(variant: str, jobs: list[tuple[int, float]], processes: int, pack_size: int) -> float:
    """Wall seconds for the native trainer alone, packs of ``pack_size`` over ``processes`` warm processes."""
    packs = [jobs[start : start + pack_size] for start in range(0, len(jobs), pack_size)]
    context = multiprocessing.get_context("spawn")
    with context.Pool(processes, initializer=_warm_native_worker, initargs=(variant,)) as pool:
        pool.map(_hold, [1.0] * processes, chunksize=1)
        started = time.perf_counter()
        pool.map(_native_worker, [(variant, pack) for pack in packs], chunksize=1)
        return time.perf_counter() - started


@contextmanager
def store_url(store: str, home: Path) -> Iterator[str | None]:
    """The store of a stack run: None (the stack's own SQLite file) or a fresh Postgres database."""
    if store == "sqlite":
        yield None
    else:
        with fresh_database() as url:
            yield url


def stored_job(url: str, job_id: str) -> dict[str, Any]:
    return {**queries.job_detail(url, job_id), "costs": queries.job_costs(url, job_id)}


def same(a: float, b: Any) -> bool:
    value = float(b)
    return (math.isnan(a) and math.isnan(value)) or a == value


def bit_identical(job: dict[str, Any], seed_output: Any) -> bool:
    costs, hypothesis, predicted, accuracy = seed_output
    return (
        len(job["costs"]) == len(costs)
        and all(same(c, s) for (_, c), (_, s) in zip(costs, job["costs"], strict=True))
        and all(same(h, s) for h, s in zip(hypothesis, job["hypothesis"], strict=True))
        and job["predicted"] == predicted
        and same(accuracy, job["accuracy"])
    )


def submit_args(variant: str, seeds: str, lrs: tuple[float, ...]) -> list[str]:
    return [
        "--variant",
        variant,
        "--seed",
        seeds,
        "--lr",
        ",".join(str(lr) for lr in lrs),
        "--steps",
        str(STEPS),
    ]


def bench_large(
    variant: str,
    seeds: int,
    store: str,
    workers: int,
    pack_size: int,
    home: Path,
    seed_outputs: list[Any],
    baseline_rate: float,
) -> dict[str, Any]:
    """A large sweep (10,000 jobs by default) end to end through the stack on ``store``."""
    jobs = sweep_jobs(seeds)
    row: dict[str, Any] = {"store": store, "jobs": len(jobs)}
    with (
        store_url(store, home) as url,
        running_stack(home / f"{variant}-{store}-large", workers, pack_size, url) as stack,
    ):
        started = time.perf_counter()
        sweep_id = stack.submit(submit_args(variant, f"0-{seeds - 1}", LRS))
        first = stack.wait(sweep_id)
        wall = time.perf_counter() - started
        counts = queries.sweep_status(stack.database_url, sweep_id)["counts"]
        sample = [stored_job(stack.database_url, job_id) for job_id in stack.job_ids[: len(seed_outputs)]]
        row.update(
            seconds=wall,
            jobs_per_second=len(jobs) / wall,
            ratio_to_sequential_seed_loop=len(jobs) / wall / baseline_rate,
            first_result_seconds=None if first is None else first - started,
            succeeded=counts["succeeded"],
            bit_identical_sample=sum(
                bit_identical(job, output) for job, output in zip(sample, seed_outputs, strict=True)
            ),
            sample=len(seed_outputs),
            peak_rss_mib_per_worker_process=stack.peak_rss_mib(),
        )
    return row


def bench_variant(
    variant: str,
    seeds: int,
    sample_size: int,
    workers: int,
    pack_size: int,
    home: Path,
    large_seeds: int,
    stores: list[str],
) -> dict[str, Any]:
    jobs = sweep_jobs(seeds)
    total = len(jobs)
    sample = jobs[:sample_size]
    row: dict[str, Any] = {"variant": variant, "jobs": total, "sample": len(sample), "workers": workers}

    seq_wall, seed_outputs = time_seed_loop(variant, sample, 1)
    row["seed_loop_seconds_per_job"] = seq_wall / len(sample)
    baseline_rate = len(sample) / seq_wall
    per_core_wall, _ = time_seed_loop(variant, sample, workers)
    rates = {
        "seed loop, sequential (sample, scaled)": baseline_rate,
        "seed loop, one process per core (sample, scaled)": len(sample) / per_core_wall,
    }

    sample_seeds = f"0-{(sample_size - 1) // len(LRS)}"
    with running_stack(home / f"{variant}-solo", workers, pack_size=1) as stack:
        started = time.perf_counter()
        stack.wait(stack.submit(submit_args(variant, sample_seeds, LRS)))
        rates["xorjobs solo: CLI->API->Redis->workers->SQLite (sample, scaled)"] = len(sample) / (
            time.perf_counter() - started
        )

    with running_stack(home / f"{variant}-packed", workers, pack_size=pack_size) as stack:
        started = time.perf_counter()
        sweep_id = stack.submit(submit_args(variant, f"0-{seeds - 1}", LRS))
        stack.wait(sweep_id)
        packed_wall = time.perf_counter() - started
        rates[PACKED] = total / packed_wall
        results = queries.sweep_results(stack.database_url, sweep_id)
        row["succeeded"] = results["counts"]["succeeded"]
        row["bit_identical_sample"] = sum(
            bit_identical(job, output)
            for job, output in zip(results["jobs"][: len(sample)], seed_outputs, strict=True)
        )
        row["peak_rss_mib_per_worker_process"] = stack.peak_rss_mib()
        # A single job, nothing to pack, on the warm workers: its latency against the seed loop's time.
        started = time.perf_counter()
        stack.wait(stack.submit(submit_args(variant, "123456", (1.0,))))
        row["single_job_seconds"] = time.perf_counter() - started

    alone_wall = time_packed_alone(variant, jobs, workers, pack_size)
    rates["packed trainer alone, no queue or store (whole sweep)"] = total / alone_wall
    native_wall = time_native_alone(variant, jobs, workers, pack_size)
    rates[NATIVE_ALONE] = total / native_wall
    row["single_job_over_seed_loop_seconds"] = row["single_job_seconds"] - row["seed_loop_seconds_per_job"]
    # Against the engine the stack runs (native where its self-check passes): what the stack adds.
    row["outside_training_share"] = max(0.0, (packed_wall - native_wall) / packed_wall)
    large_alone = time_native_alone(variant, sweep_jobs(large_seeds), workers, pack_size)
    row["large_native_alone_seconds"] = large_alone
    row["large"] = [
        bench_large(variant, large_seeds, store, workers, pack_size, home, seed_outputs, baseline_rate)
        for store in stores
    ]
    for large in row["large"]:
        large["outside_training_share"] = max(0.0, (large["seconds"] - large_alone) / large["seconds"])
    row["rates_jobs_per_second"] = rates
    row["ratio_to_sequential_seed_loop"] = {name: rate / baseline_rate for name, rate in rates.items()}
    return row


def print_table(rows: list[dict[str, Any]]) -> None:
    machine = platform.processor() or platform.machine()
    print(f"\nxorjobs benchmark: {machine}, {os.cpu_count()} cores, torch {torch.__version__}")
    for row in rows:
        variant, target = row["variant"], TARGETS[row["variant"]]
        print(f"\n{variant}: {row['jobs']} jobs x {STEPS} steps ({row['sample']}-job samples where scaled)")
        print(f"  {'method':<62} {'jobs/s':>9} {'x seed loop':>12}")
        ratios = row["ratio_to_sequential_seed_loop"]
        for name, rate in row["rates_jobs_per_second"].items():
            print(f"  {name:<62} {rate:>9.2f} {ratios[name]:>11.0f}x")
        packed = ratios[PACKED]
        print(f"  target >= {target:.0f}x end to end: {'met' if packed >= target else 'NOT met'}")
        share = row["outside_training_share"]
        print(f"  queue + store share of the packed stack's wall time: {share:.1%} (target <= 15%)")
        print(
            f"  single job: {row['single_job_seconds']:.2f} s vs seed loop "
            f"{row['seed_loop_seconds_per_job']:.2f} s ({row['single_job_over_seed_loop_seconds']:+.2f} s; "
            "target <= +0.5 s; CLI start-up included)"
        )
        print(
            f"  peak RSS per worker process: {row['peak_rss_mib_per_worker_process']} MiB; bit-identical to "
            f"the seed loop: {row['bit_identical_sample']}/{row['sample']} sampled jobs; "
            f"succeeded {row['succeeded']}/{row['jobs']}"
        )
        alone = row["large_native_alone_seconds"]
        for large in row["large"]:
            met = large["ratio_to_sequential_seed_loop"] >= LARGE_TARGETS[variant]
            first = large["first_result_seconds"]
            print(
                f"  {large['jobs']} jobs end to end on {large['store']}: "
                f"{large['jobs_per_second']:.0f} jobs/s, "
                f"{large['ratio_to_sequential_seed_loop']:.0f}x the seed loop (target >= "
                f"{LARGE_TARGETS[variant]:.0f}x: {'met' if met else 'NOT met'}); outside training "
                f"{large['outside_training_share']:.0%} (native alone {large['jobs'] / alone:.0f} jobs/s); "
                f"first result after {first if first is None else round(first, 2)} s; peak RSS "
                f"{large['peak_rss_mib_per_worker_process']} MiB; bit-identical "
                f"{large['bit_identical_sample']}/{large['sample']}; "
                f"succeeded {large['succeeded']}/{large['jobs']}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description="xorjobs against the seed's loop (issue 6)")
    parser.add_argument("--variants", nargs="+", default=["nn", "wide_deep"])
    parser.add_argument("--seeds", type=int, default=250, help="seeds per sweep (× 4 learning rates)")
    parser.add_argument("--sample", type=int, default=8, help="jobs timed for the scaled baselines")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--pack-size", type=int, default=Settings.model_fields["pack_size"].default)
    parser.add_argument("--large-seeds", type=int, default=2500, help="seeds of the large sweeps (x 4 lrs)")
    parser.add_argument(
        "--stores", nargs="+", default=["sqlite", "postgres"], help="stores of the large sweeps"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="xorjobs-bench-") as folder:
        rows = [
            bench_variant(
                v,
                args.seeds,
                args.sample,
                args.workers,
                args.pack_size,
                Path(folder),
                args.large_seeds,
                args.stores,
            )
            for v in args.variants
        ]
    print_table(rows)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {"machine": platform.platform(), "cores": os.cpu_count(), "steps": STEPS, "rows": rows}, indent=2
        )
    )
    print(f"\nwritten: {RESULTS}")
    # Issue 12 §3: early stopping's saving on each CPU engine, its own table and JSON.
    from bench import early_stopping

    print()
    early_stopping.main([])


if __name__ == "__main__":
    main()
