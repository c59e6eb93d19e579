"""Benchmark: the native engine against the exact packed trainer, side by side in one run.

Run ``python bench/native_trainer.py`` (``--help`` for options). For each variant and job count it trains
the same jobs (seeds 0.., mixed lrs) with the native engine and with the exact packed engine
(``train_packed``'s CPU engine), each split over ``--processes`` worker processes (one thread each, as
the workers run), and reports wall-clock jobs/s of the whole ``train`` call (initial weights and result
building included) and the native/packed ratio measured in the same run. It also checks that the two
engines' results are bit-identical (``same_result``) for every job. Wall-clock time on a shared machine
varies; compare the ratios. Results also go to ``bench/results/native_trainer.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from xorjobs.models.engines import EXACT, NATIVE
from xorjobs.models.native_engine import NativeEngine
from xorjobs.models.packed import same_result
from xorjobs.models.result import TrainResult

RESULTS = Path(__file__).resolve().parent / "results" / "native_trainer.json"
LRS = (0.01, 0.1, 0.5, 1.0, 5.0)


def _warm() -> None:
    """Per process, before the clock: torch's threads, the sgemm trees, the native self-check."""
    torch.set_num_threads(1)
    for variant in ("nn", "wide_deep"):
        assert NATIVE.self_check(variant, "cpu", 20), f"the native self-check fails for {variant} here"
        EXACT.train(variant, [0], [0.1], steps=2)


def _train(engine: str, variant: str, seeds: list[int], steps: int) -> tuple[float, list[TrainResult]]:
    """One process's share: its CPU seconds and its results."""
    trainer = NATIVE if engine == "native" else EXACT
    start = time.process_time()
    results = trainer.train(variant, seeds, [LRS[s % len(LRS)] for s in seeds], steps=steps, log_every=100)
    return time.process_time() - start, results


def _timed(
    pool: ProcessPoolExecutor, processes: int, engine: str, variant: str, jobs: int, steps: int
) -> tuple[float, float, list[TrainResult]]:
    """``(wall seconds, CPU seconds of all processes, results in job order of the shares)``."""
    shares = [list(range(jobs))[p::processes] for p in range(processes)]
    start = time.perf_counter()
    futures = [pool.submit(_train, engine, variant, share, steps) for share in shares]
    parts = [f.result() for f in futures]
    wall = time.perf_counter() - start
    return wall, sum(cpu for cpu, _ in parts), [r for _, results in parts for r in results]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", default=["nn", "wide_deep"])
    parser.add_argument("--jobs", nargs="+", type=int, default=[1000, 4000], help="nn job counts")
    parser.add_argument("--wide-deep-jobs", nargs="+", type=int, default=[1000])
    parser.add_argument("--steps", type=int, default=10001)
    parser.add_argument("--processes", type=int, default=2)
    args = parser.parse_args()
    reason = NativeEngine().unavailable_reason()
    if reason is not None:
        sys.exit(f"native engine unavailable: {reason}")
    report: dict[str, Any] = {
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "torch": torch.__version__,
            "processes": args.processes,
        },
        "method": "whole train() per engine, jobs split over the processes, same run: wall clock, and"
        " CPU seconds of the processes (process_time; less inflated by a busy machine)",
        "results": [],
    }
    header = f"{'variant':>9} {'jobs':>6} {'steps':>6} {'native j/s':>11} {'packed j/s':>11} {'ratio':>6}"
    print(header, f"{'cpu ratio':>9} identical   (j/s: wall clock, {args.processes} processes)")
    with ProcessPoolExecutor(args.processes, initializer=_warm) as pool:
        list(pool.map(time.sleep, [0.01] * args.processes))  # start (and warm) every process first
        for variant in args.variants:
            for jobs in args.jobs if variant == "nn" else args.wide_deep_jobs:
                native_s, native_cpu, native = _timed(
                    pool, args.processes, "native", variant, jobs, args.steps
                )
                packed_s, packed_cpu, packed = _timed(
                    pool, args.processes, "packed", variant, jobs, args.steps
                )
                identical = sum(same_result(a, b) for a, b in zip(native, packed, strict=True))
                row = {
                    "variant": variant,
                    "jobs": jobs,
                    "steps": args.steps,
                    "native_s": native_s,
                    "packed_s": packed_s,
                    "native_cpu_s": native_cpu,
                    "packed_cpu_s": packed_cpu,
                    "native_jobs_per_s": jobs / native_s,
                    "packed_jobs_per_s": jobs / packed_s,
                    "ratio": packed_s / native_s,
                    "cpu_ratio": packed_cpu / native_cpu,
                    "native_jobs_per_cpu_s": jobs / native_cpu,
                    "identical": identical,
                }
                report["results"].append(row)
                print(
                    f"{variant:>9} {jobs:>6} {args.steps:>6} {row['native_jobs_per_s']:>11.0f}"
                    f" {row['packed_jobs_per_s']:>11.0f} {row['ratio']:>5.1f}x {row['cpu_ratio']:>8.1f}x"
                    f" {identical}/{jobs}"
                )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {RESULTS}")


if __name__ == "__main__":
    main()
