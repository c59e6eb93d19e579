"""Microbenchmark: per-step time of the packed trainer against pack size, and against solo runs.

Run ``python bench/packed_trainer.py`` (``--help`` for options). It times ``train_packed`` for several
pack sizes and ``models.train`` (solo) in the same process, both single-threaded, and prints a table of
per-step time and throughput (jobs/s at the full 10001 steps, one process). Timings are CPU time of this
process (``time.process_time``), the minimum over ``--repeats`` runs, so a busy shared machine inflates
them less; compare the *ratios* to solo, which are measured in the same run, rather than the seconds.
Results also go to ``bench/results/packed_trainer.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from xorjobs.defaults import DEFAULT_STEPS, VARIANTS
from xorjobs.models import train
from xorjobs.models.packed import train_packed

RESULTS = Path(__file__).resolve().parent / "results" / "packed_trainer.json"
FULL_STEPS = DEFAULT_STEPS
LRS = (0.01, 0.1, 0.5, 1.0, 5.0)


def _cpu_seconds(run: Callable[[], None], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        run()
        best = min(best, time.process_time() - start)
    return best


def measure(variant: str, sizes: list[int], steps: int, solo_jobs: int, repeats: int) -> dict[str, Any]:
    """Per-step seconds for solo and for each pack size; a pack's set-up (init, final forward) is timed
    by a 0-step run and taken off."""
    torch.set_num_threads(1)
    solo_runs = [(seed, LRS[seed % len(LRS)]) for seed in range(solo_jobs)]

    def solo() -> None:
        for seed, lr in solo_runs:
            train(variant, seed, lr, steps=steps, log_every=100)

    solo_step = _cpu_seconds(solo, repeats) / (steps * solo_jobs)
    rows: list[dict[str, float]] = []
    for size in sizes:
        seeds = list(range(size))
        lrs = [LRS[s % len(LRS)] for s in seeds]

        def packed(n_steps: int, seeds: list[int] = seeds, lrs: list[float] = lrs) -> None:
            train_packed(variant, seeds, lrs, steps=n_steps, log_every=100)

        setup = _cpu_seconds(lambda: packed(0), repeats)
        step = max(_cpu_seconds(lambda: packed(steps), repeats) - setup, 1e-9) / steps
        job_step = step / size
        rows.append(
            {
                "pack_size": size,
                "step_ms": step * 1e3,
                "setup_ms_per_job": setup * 1e3 / size,
                "jobs_per_s_full": 1.0 / (job_step * FULL_STEPS + setup / size),
                "speedup_vs_solo": solo_step / job_step,
            }
        )
    return {
        "variant": variant,
        "solo_step_ms": solo_step * 1e3,
        "solo_jobs_per_s_full": 1.0 / (solo_step * FULL_STEPS),
        "packs": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS))
    parser.add_argument("--sizes", nargs="+", type=int, default=[1, 16, 64, 256, 1000])
    parser.add_argument("--steps", type=int, default=200, help="steps per timed run")
    parser.add_argument("--solo-jobs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    report: dict[str, Any] = {
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "torch": torch.__version__,
            "threads": 1,
        },
        "method": "CPU seconds (process_time), min of repeats; per-step = (t(steps) - t(0 steps)) / steps",
        "results": [],
    }
    for variant in args.variants:
        result = measure(variant, args.sizes, args.steps, args.solo_jobs, args.repeats)
        report["results"].append(result)
        print(
            f"\n{variant}: solo {result['solo_step_ms']:.4f} ms/step,"
            f" {result['solo_jobs_per_s_full']:.3f} jobs/s at {FULL_STEPS} steps (1 process)"
        )
        print(f"{'pack':>6} {'ms/step':>9} {'setup ms/job':>12} {'jobs/s':>9} {'x solo':>8}")
        for row in result["packs"]:
            print(
                f"{row['pack_size']:>6} {row['step_ms']:>9.3f} {row['setup_ms_per_job']:>12.3f}"
                f" {row['jobs_per_s_full']:>9.2f} {row['speedup_vs_solo']:>8.1f}"
            )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {RESULTS}")


if __name__ == "__main__":
    main()
