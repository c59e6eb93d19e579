"""GPU figures for the packed trainer and the worker's CUDA path, on a machine with CUDA.

Usage: ``scripts/gpu_check.sh [OUT_DIR]`` (or ``python -m scripts.gpu_check OUT_DIR``). In one run:

1. **Trainer.** For each variant, 1,000 jobs (250 seeds x 4 lrs, 10001 steps) through the packed
   trainer on CUDA (CUDA graphs), and the same packs eagerly, timed; 10,000 jobs in one pack, timed;
   this machine's CPU, exact engine, one process, on a 64-job sample, timed (the baseline of the ratio).
2. **Agreement with the CPU.** The 64 sampled jobs on CUDA (packed and solo) against the CPU: max
   relative cost difference over the first 1,000 steps and over the whole run, the first logged step
   past 1e-3, and final accuracies that agree. Training is chaotic, so late drift is expected.
3. **The worker path.** ``xorjobs run --device cuda`` in the embedded mode (SQLite + the in-process
   worker), which claims and packs the jobs as a GPU worker does, timed; its stored results against
   the CPU's for the same jobs.

Prints a summary and writes ``gpu_check.json`` to OUT_DIR (default ``bench/results``).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from xorjobs.defaults import DEFAULT_STEPS, VARIANTS
from xorjobs.models import train
from xorjobs.models.packed import train_packed
from xorjobs.models.packed_batched import BatchedEngine

STEPS = int(os.environ.get("GPU_CHECK_STEPS", str(DEFAULT_STEPS)))  # fewer only for a dry run without a GPU
DEVICE = os.environ.get("GPU_CHECK_DEVICE", "cuda")  # "cpu" only for a dry run of this script
LRS = (0.1, 0.5, 1.0, 5.0)
SAMPLE = 64


def relative(a: float, b: float) -> float:
    if math.isnan(a) or math.isnan(b):
        return 0.0 if math.isnan(a) and math.isnan(b) else math.inf
    return abs(a - b) / max(abs(b), 1e-12)


def compare(gpu: list[Any], cpu: list[Any]) -> dict[str, Any]:
    """Cost-curve agreement of paired results (TrainResult-like: .costs, .accuracy)."""
    first_1000, whole, firsts, agree = 0.0, 0.0, [], 0
    for g, c in zip(gpu, cpu, strict=True):
        diffs = [(step, relative(x, y)) for (step, x), (_, y) in zip(g.costs, c.costs, strict=True)]
        first_1000 = max(first_1000, *(d for step, d in diffs if step <= 1000))
        whole = max(whole, *(d for _, d in diffs))
        firsts.append(next((step for step, d in diffs if d > 1e-3), None))
        agree += int(g.accuracy == c.accuracy)
    past = [step for step in firsts if step is not None]
    return {
        "jobs": len(gpu),
        "max_rel_cost_diff_steps_0_1000": first_1000,
        "max_rel_cost_diff_whole_run": whole,
        "jobs_past_1e-3": len(past),
        "median_first_step_past_1e-3": sorted(past)[len(past) // 2] if past else None,
        "accuracy_agrees": agree,
    }


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(fn: Any) -> tuple[float, Any]:
    _sync()
    started = time.perf_counter()
    value = fn()
    _sync()
    return time.perf_counter() - started, value


def trainer_figures(variant: str) -> dict[str, Any]:
    jobs = [(seed, lr) for seed in range(250) for lr in LRS]
    seeds, lrs = [s for s, _ in jobs], [lr for _, lr in jobs]
    train_packed(variant, seeds[:8], lrs[:8], steps=20, device=DEVICE)  # CUDA context and kernels warm
    row: dict[str, Any] = {"variant": variant}
    wall, gpu_all = timed(lambda: train_packed(variant, seeds, lrs, steps=STEPS, device=DEVICE))
    row["cuda_graphs_1000_jobs_per_s"] = len(jobs) / wall
    eager = BatchedEngine(graphs=False)
    wall, _ = timed(lambda: train_packed(variant, seeds, lrs, steps=STEPS, device=DEVICE, engine=eager))
    row["cuda_eager_1000_jobs_per_s"] = len(jobs) / wall
    big_seeds = list(range(10_000 if DEVICE == "cuda" else 100))
    big_lrs = [LRS[i % 4] for i in big_seeds]
    wall, _ = timed(lambda: train_packed(variant, big_seeds, big_lrs, steps=STEPS, device=DEVICE))
    row["cuda_graphs_10000_jobs_one_pack_per_s"] = len(big_seeds) / wall

    sample = slice(0, SAMPLE)
    started = time.perf_counter()
    cpu = train_packed(variant, seeds[sample], lrs[sample], steps=STEPS)  # exact: equals solo CPU runs
    row["cpu_exact_packed_64_jobs_per_s_one_process"] = SAMPLE / (time.perf_counter() - started)
    from xorjobs.models.packed import packing_is_exact

    row["cpu_packing_is_exact_here"] = packing_is_exact(variant)
    row["cuda_packed_vs_cpu"] = compare(gpu_all[sample], cpu)
    solo_jobs = 3
    wall, gpu_solo = timed(
        lambda: [train(variant, s, lr, steps=STEPS, device=DEVICE) for s, lr in jobs[:solo_jobs]]
    )
    row["cuda_solo_seconds_per_job"] = wall / solo_jobs
    row["cuda_solo_vs_cpu"] = compare(gpu_solo, cpu[:solo_jobs])
    row["cuda_packed_vs_cuda_solo"] = compare(gpu_all[:solo_jobs], gpu_solo)
    row["device_name"] = gpu_all[0].device_name
    return row


def worker_path(out: Path) -> dict[str, Any]:
    """``xorjobs run`` (embedded) on CUDA and on the CPU for the same sweep; stored results compared."""
    try:
        from xorjobs.store import queries
    except ImportError as missing:
        return {"skipped": f"the project's dependencies are not installed here: {missing}"}
    figures: dict[str, Any] = {}
    args = ["--variant", "nn,wide_deep", "--seed", "0-31", "--lr", "0.5,1", "--steps", str(STEPS), "--json"]
    stored: dict[str, list[dict[str, Any]]] = {}
    for device in (DEVICE, "cpu"):
        home = Path(tempfile.mkdtemp(prefix=f"xorjobs-gpu-{device}-"))
        env = {**os.environ, "XORJOBS_HOME": str(home), "PYTHONUNBUFFERED": "1"}
        started = time.perf_counter()
        cli = "import sys; from xorjobs.cli import main; sys.argv[0] = 'xorjobs'; main()"
        command = [sys.executable, "-c", cli, "run", "--device", device, *args]
        run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240, check=False)
        figures[f"{device}_run_seconds"] = time.perf_counter() - started
        figures[f"{device}_exit_code"] = run.returncode
        log_text = run.stdout[-20000:] + "\n--- stderr ---\n" + run.stderr[-20000:]
        (out / f"run_{device}.log").write_text(log_text)
        if run.returncode != 0:
            return figures
        sweep_id = json.loads(run.stdout)["sweep_id"]
        url = f"sqlite:///{home / 'xorjobs.db'}"
        stored[device] = queries.sweep_results(url, sweep_id)["jobs"]
    figures["jobs"] = len(stored[DEVICE])
    figures["cuda_succeeded"] = sum(job["state"] == "succeeded" for job in stored[DEVICE])
    figures["cuda_device_names"] = sorted({str(job["device_name"]) for job in stored[DEVICE]})

    class Stored:
        def __init__(self, job: dict[str, Any]) -> None:
            self.costs = [(step, float(value)) for step, value in job["costs"]]
            self.accuracy = job["accuracy"]

    figures["stored_cuda_vs_cpu"] = compare(
        [Stored(job) for job in stored[DEVICE]], [Stored(job) for job in stored["cpu"]]
    )
    return figures


def main() -> None:
    default = Path(__file__).resolve().parents[1] / "bench" / "results"
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else default
    out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else "none (dry run)",
        "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "steps": STEPS,
        "trainer": [],
    }
    for variant in VARIANTS:
        row = trainer_figures(variant)
        report["trainer"].append(row)
        print(json.dumps(row), flush=True)
        (out / "gpu_check.json").write_text(json.dumps(report, indent=2))
    report["worker_path"] = worker_path(out)
    print(json.dumps(report["worker_path"]), flush=True)
    (out / "gpu_check.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
