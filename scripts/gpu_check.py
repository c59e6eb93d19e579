"""On a machine with CUDA: train the same jobs on the GPU (through a real gpu worker) and on the CPU, and
compare. Training is chaotic, so later steps may drift apart; this reports how far, step by step.

Usage: ``scripts/gpu_check.sh`` (starts its own redis-server, a gpu worker and a cpu worker on a
temporary SQLite store). Prints, per variant, the max relative cost difference over the first 1,000 steps
and over the whole run, the first logged step where the difference passes 1e-3, and whether the final
accuracies agree; writes the same to ``bench/results/gpu_check.json``.
"""

from __future__ import annotations

import json
import math
import subprocess
import tempfile
from pathlib import Path

from tests.services import XORJOBS, clean_env, free_port, start_worker, wait_until
from xorjobs.store import queries

SEEDS = "1-8"
LRS = "0.1,1.0"
STEPS = 10001
RESULTS = Path(__file__).resolve().parents[1] / "bench" / "results" / "gpu_check.json"


def relative(a: float, b: float) -> float:
    if math.isnan(a) or math.isnan(b):
        return 0.0 if math.isnan(a) and math.isnan(b) else math.inf
    return abs(a - b) / max(abs(b), 1e-12)


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="xorjobs-gpu-check-") as folder:
        home = Path(folder)
        port = free_port()
        redis = subprocess.Popen(
            ["redis-server", "--port", str(port), "--save", ""], stdout=subprocess.DEVNULL
        )
        url = f"sqlite:///{home / 'store.db'}"
        env = clean_env(
            XORJOBS_HOME=str(home), XORJOBS_DATABASE_URL=url, XORJOBS_BROKER_URL=f"redis://127.0.0.1:{port}/0"
        )
        workers = [start_worker(env, home, "gpu", queue="gpu"), start_worker(env, home, "cpu", queue="cpu")]
        try:
            sweeps = {}
            for device in ("cuda", "cpu"):
                out = subprocess.run(
                    [
                        XORJOBS,
                        "submit",
                        "--seed",
                        SEEDS,
                        "--lr",
                        LRS,
                        "--steps",
                        str(STEPS),
                        "--device",
                        device,
                        "--json",
                    ],
                    env=env,
                    capture_output=True,
                    text=True,
                    check=True,
                )
                sweeps[device] = json.loads(out.stdout)["sweep_id"]
            for sweep_id in sweeps.values():
                wait_until(
                    lambda s=sweep_id: (
                        queries.sweep_status(url, s)["counts"]["succeeded"]
                        + queries.sweep_status(url, s)["counts"]["failed"]
                        == queries.sweep_status(url, s)["size"]
                    ),
                    3600,
                    f"sweep {sweep_id}",
                    interval=1,
                )
            gpu_jobs = queries.sweep_results(url, sweeps["cuda"])["jobs"]
            cpu_jobs = queries.sweep_results(url, sweeps["cpu"])["jobs"]
        finally:
            for worker in workers:
                worker.stop()
            redis.kill()
    report: dict[str, dict[str, object]] = {}
    for gpu, cpu in zip(gpu_jobs, cpu_jobs, strict=True):
        variant = gpu["variant"]
        entry = report.setdefault(
            variant,
            {
                "jobs": 0,
                "max_rel_first_1000": 0.0,
                "max_rel_all": 0.0,
                "accuracy_agree": 0,
                "first_step_over_1e-3": [],
                "device_name": gpu["device_name"],
            },
        )
        diffs = [
            (step, relative(float(g), float(c)))
            for (step, g), (_, c) in zip(gpu["costs"], cpu["costs"], strict=True)
        ]
        entry["jobs"] += 1  # type: ignore[operator]
        entry["max_rel_first_1000"] = max(entry["max_rel_first_1000"], *(d for s, d in diffs if s <= 1000))  # type: ignore[call-overload]
        entry["max_rel_all"] = max(entry["max_rel_all"], *(d for _, d in diffs))  # type: ignore[call-overload]
        entry["accuracy_agree"] += int(gpu["accuracy"] == cpu["accuracy"])  # type: ignore[operator]
        entry["first_step_over_1e-3"].append(next((s for s, d in diffs if d > 1e-3), None))  # type: ignore[attr-defined]
    for variant, entry in report.items():
        print(
            f"{variant:>10} on {entry['device_name']}: max rel. cost diff, steps 0-1000: "
            f"{entry['max_rel_first_1000']:.3e}; whole run: {entry['max_rel_all']:.3e}; "
            f"accuracies agree {entry['accuracy_agree']}/{entry['jobs']}; "
            f"first step over 1e-3: {entry['first_step_over_1e-3']}"
        )
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
