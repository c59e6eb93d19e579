"""Benchmark (issue 12 §3): early stopping's compute saving, measured against the same sweep without it.

Run ``python -m bench.early_stopping`` (``--help`` for options; ``make bench`` runs it after the main
bench). The sweep is ``nn`` × ``--seeds`` seeds (0..) × learning rates 0.5, 1 and 2, 10001 steps logged
every 100: 334 seeds give 1,002 jobs. Each CPU engine trains it twice in the same run, with
``stop_below`` (default 0.05) and without, split over ``--processes`` processes (one thread each, as the
workers run; each process one pack of its share, as a worker packs up to 512): the exact packed engine
and the native engine on the whole sweep, the solo engine (the seed's loop, one job after another) on
the first ``--solo-jobs`` jobs only, since 1,000 solo runs take over an hour here. Wall-clock and CPU
seconds (``process_time`` of the training processes) of each ``train`` call, and their ratios, measured
side by side (the pack engines: best of ``--repeat`` interleaved runs, this machine being shared).

Checked in the same run, for every job: the stopping run stopped at the first logged step whose cost in
the full run is below the threshold (the rule as defined) and its costs are that run's prefix; the
exact and native engines' stopping results are bit-identical. It reports the median steps to solve (the
logged step where a job stopped), how many stopped, and the mean steps trained: the compute a pack
does follows the mean (jobs that never get below the threshold still run all 10,001 steps), not the
median. Prints a table and writes ``bench/results/early_stopping.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from xorjobs.defaults import DEFAULT_STEPS
from xorjobs.models.engines import engine_named
from xorjobs.models.result import TrainResult
from xorjobs.models.self_check import same_result
from xorjobs.models.stopping import NO_STOP, StopRule

RESULTS = Path(__file__).resolve().parent / "results" / "early_stopping.json"
LRS = (0.5, 1.0, 2.0)
LOG_EVERY = 100


def sweep(seeds: int) -> list[tuple[int, float]]:
    """The sweep's (seed, lr) jobs in expansion order."""
    return [(seed, lr) for seed in range(seeds) for lr in LRS]


def _warm() -> None:
    """Per process, before the clock: one thread, the sgemm trees, the native kernel's self-check."""
    torch.set_num_threads(1)
    engine_named("native").self_check("nn", "cpu", 20)
    engine_named("exact").train("nn", [0], [0.1], steps=2)


def _train(
    engine: str, jobs: list[tuple[int, float]], steps: int, below: float | None
) -> tuple[float, float, list[TrainResult]]:
    """One process's share as one ``train`` call: its CPU and wall seconds, and its results."""
    rule = NO_STOP if below is None else StopRule(below)
    start, started = time.process_time(), time.perf_counter()
    results = engine_named(engine).train(
        "nn", [s for s, _ in jobs], [lr for _, lr in jobs], steps=steps, log_every=LOG_EVERY, stop=rule
    )
    return time.process_time() - start, time.perf_counter() - started, results


def timed(
    pool: ProcessPoolExecutor,
    processes: int,
    engine: str,
    jobs: list[tuple[int, float]],
    steps: int,
    below: float | None,
) -> tuple[float, float, list[TrainResult]]:
    """``(wall seconds, CPU seconds of all processes, results in job order)``: the wall time of the
    slowest process's ``train`` call (sending the results back to this process is not training)."""
    shares = [jobs[p::processes] for p in range(processes)]
    futures = [pool.submit(_train, engine, share, steps, below) for share in shares if share]
    parts = [future.result() for future in futures]
    wall = max(part_wall for _, part_wall, _ in parts)
    ordered: list[TrainResult | None] = [None] * len(jobs)
    for p, (_, _, results) in enumerate(parts):
        for position, result in enumerate(results):
            ordered[p + position * processes] = result
    assert all(result is not None for result in ordered)
    return wall, sum(cpu for cpu, _, _ in parts), [result for result in ordered if result is not None]


def check_rule(full: list[TrainResult], stopped: list[TrainResult], below: float) -> int:
    """How many jobs stopped exactly where the rule says, with the full run's costs as their prefix."""
    good = 0
    for a, b in zip(full, stopped, strict=True):
        first = next((step for step, cost in a.costs if cost < below), None)
        if b.stopped_at_step == first and b.costs == a.costs[: len(b.costs)]:
            good += 1
    return good


def stop_figures(results: list[TrainResult], jobs: list[tuple[int, float]], steps: int) -> dict[str, Any]:
    """Median steps to solve (overall and per lr), how many stopped, mean steps trained."""
    stopped = [r.stopped_at_step for r in results if r.stopped_at_step is not None]
    per_lr: dict[str, Any] = {}
    for lr in LRS:
        at = [r.stopped_at_step for r, (_, rate) in zip(results, jobs, strict=True) if rate == lr]
        solved = [s for s in at if s is not None]
        per_lr[f"{lr:g}"] = {
            "jobs": len(at),
            "stopped": len(solved),
            "median_steps_to_solve": statistics.median(solved) if solved else None,
        }
    trained = [r.steps_trained(steps) for r in results]
    return {
        "stopped": len(stopped),
        "median_steps_to_solve": statistics.median(stopped) if stopped else None,
        "mean_steps_trained": statistics.fmean(trained),
        "compute_fraction": statistics.fmean(trained) / steps,
        "per_lr": per_lr,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=334, help="seeds (x 3 learning rates)")
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS)
    parser.add_argument("--stop-below", type=float, default=0.05)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--solo-jobs", type=int, default=16, help="jobs the solo engine trains (0: skip)")
    parser.add_argument("--engines", nargs="+", default=["exact", "native", "solo"])
    parser.add_argument("--repeat", type=int, default=3, help="pack engines: best of this many runs each")
    args = parser.parse_args(argv)
    jobs = sweep(args.seeds)
    rows: list[dict[str, Any]] = []
    stopping_results: dict[str, list[TrainResult]] = {}
    print(
        f"nn, {len(jobs)} jobs ({args.seeds} seeds x lr {', '.join(f'{lr:g}' for lr in LRS)}), {args.steps} "
        f"steps, stop_below {args.stop_below:g}; {args.processes} processes, one thread each\n"
    )
    header = (
        f"{'engine':>7} {'jobs':>5} {'full wall s':>11} {'stop wall s':>11} {'wall x':>6} {'full cpu s':>10} "
        f"{'stop cpu s':>10} {'cpu x':>6} {'stopped':>8} {'rule ok':>8}"
    )
    print(header)
    with ProcessPoolExecutor(args.processes, initializer=_warm) as pool:
        list(pool.map(time.sleep, [0.01] * args.processes))  # start and warm every process first
        for engine in args.engines:
            engine_jobs = jobs[: args.solo_jobs] if engine == "solo" else jobs
            if not engine_jobs:
                continue
            # Best of --repeat, full and stopping runs interleaved, so both meet the same load (the solo
            # subset runs once: a minute of CPU a go).
            full_wall = full_cpu = stop_wall = stop_cpu = float("inf")
            for _ in range(1 if engine == "solo" else args.repeat):
                wall, cpu, full = timed(pool, args.processes, engine, engine_jobs, args.steps, None)
                full_wall, full_cpu = min(full_wall, wall), min(full_cpu, cpu)
                wall, cpu, stopped = timed(
                    pool, args.processes, engine, engine_jobs, args.steps, args.stop_below
                )
                stop_wall, stop_cpu = min(stop_wall, wall), min(stop_cpu, cpu)
            stopping_results[engine] = stopped
            figures = stop_figures(stopped, engine_jobs, args.steps)
            row = {
                "engine": engine,
                "jobs": len(engine_jobs),
                "subset": engine == "solo",
                "full_wall_s": full_wall,
                "stop_wall_s": stop_wall,
                "wall_ratio": full_wall / stop_wall,
                "full_cpu_s": full_cpu,
                "stop_cpu_s": stop_cpu,
                "cpu_ratio": full_cpu / stop_cpu,
                "rule_checked": check_rule(full, stopped, args.stop_below),
                **figures,
            }
            rows.append(row)
            print(
                f"{engine:>7} {row['jobs']:>5} {full_wall:>11.2f} {stop_wall:>11.2f} "
                f"{row['wall_ratio']:>5.1f}x {full_cpu:>10.2f} {stop_cpu:>10.2f} {row['cpu_ratio']:>5.1f}x "
                f"{row['stopped']:>8} "
                f"{row['rule_checked']:>4}/{row['jobs']}"
            )
    identical = None
    if "exact" in stopping_results and "native" in stopping_results:
        pairs = zip(stopping_results["exact"], stopping_results["native"], strict=True)
        identical = sum(
            same_result(a, b) and (a.stopped_at_step, a.stop_reason) == (b.stopped_at_step, b.stop_reason)
            for a, b in pairs
        )
    whole = next((row for row in rows if not row["subset"]), None)
    if whole is not None:
        print(
            f"\nmedian steps to solve (cost < {args.stop_below:g}): {whole['median_steps_to_solve']} "
            f"({whole['stopped']}/{whole['jobs']} stopped); mean steps trained "
            f"{whole['mean_steps_trained']:.0f} of {args.steps} = "
            f"{100 * whole['compute_fraction']:.0f}% of the full sweep's steps"
        )
        for lr, figures in whole["per_lr"].items():
            print(
                f"  lr {lr}: {figures['stopped']}/{figures['jobs']} stopped, median steps to solve "
                f"{figures['median_steps_to_solve']}"
            )
    if identical is not None:
        print(f"exact and native stopping results bit-identical: {identical}/{len(jobs)}")
    if any(row["subset"] for row in rows):
        print(f"(solo: the first {args.solo_jobs} jobs of the sweep only; 2-6 s a job, by machine)")
    report = {
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "torch": torch.__version__,
            "processes": args.processes,
        },
        "sweep": {
            "variant": "nn",
            "seeds": args.seeds,
            "lrs": list(LRS),
            "jobs": len(jobs),
            "steps": args.steps,
        },
        "stop_below": args.stop_below,
        "method": "each engine's train() on the same jobs with and without the rule, same run, interleaved;"
        " wall clock and CPU seconds (process_time) of the training processes, best of --repeat for the"
        " pack engines",
        "repeat": args.repeat,
        "rows": rows,
        "exact_native_identical": identical,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {RESULTS}")


if __name__ == "__main__":
    main()
