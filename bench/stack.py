"""The real stack for benchmarks: a private redis-server, the API and `xorjobs worker` processes."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psutil
from sqlalchemy import func, select

from xorjobs.defaults import JOB_STATES
from xorjobs.store.engine import read_session
from xorjobs.store.tables import Job
from xorjobs.testing.processes import (
    XORJOBS,
    ServiceProcess,
    clean_env,
    free_port,
    start_api,
    start_worker,
    wait_until,
)


@dataclass
class Stack:
    env: dict[str, str]
    database_url: str
    workers: list[ServiceProcess]
    peak_rss: dict[int, int] = field(default_factory=dict)
    job_ids: list[str] = field(default_factory=list)
    """The last submitted sweep's job ids, in expansion order."""

    def submit(self, args: list[str]) -> str:
        """Submit through the CLI (→ API → Redis), as a user would; returns the sweep id."""
        result = subprocess.run(
            [XORJOBS, "submit", *args, "--json"],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
            check=True,
        )
        submitted = json.loads(result.stdout)
        self.job_ids = [str(job["id"]) for job in submitted["jobs"]]
        return str(submitted["sweep_id"])

    def wait(self, sweep_id: str, timeout: float = 1800) -> float | None:
        """Wait until the sweep is finished; returns when (``time.perf_counter``) its first stored result
        was seen (polled every 0.05 s while none is, then every 0.1 s), None if it had none."""
        first: list[float] = []

        def done() -> bool:
            counts = sweep_counts(self.database_url, sweep_id)
            if not first and counts["succeeded"] + counts["failed"] > 0:
                first.append(time.perf_counter())
            return counts["queued"] + counts["running"] == 0

        wait_until(done, timeout, f"sweep {sweep_id}", interval=0.05)
        return first[0] if first else None

    def peak_rss_mib(self) -> float:
        """The largest peak RSS of any worker process (main, pool child or recovery), in MiB."""
        return round(max(self.peak_rss.values()) / 2**20, 1)

    def sample_memory(self) -> None:
        for worker in self.workers:
            for process in [psutil.Process(worker.pid), *psutil.Process(worker.pid).children(recursive=True)]:
                try:
                    rss = process.memory_info().rss
                except psutil.Error:
                    continue
                self.peak_rss[process.pid] = max(self.peak_rss.get(process.pid, 0), rss)


def sweep_counts(url: str, sweep_id: str) -> dict[str, int]:
    """The sweep's jobs per state, in one grouped count (the poll must not load 10,000 job rows: it
    would take CPU from the workers it is timing)."""
    with read_session(url) as session:
        rows = session.execute(
            select(Job.state, func.count()).where(Job.sweep_id == sweep_id).group_by(Job.state)
        ).all()
    counts: dict[str, int] = {str(state): 0 for state in JOB_STATES}
    counts.update({str(state): int(count) for state, count in rows})
    return counts


@contextmanager
def running_stack(
    home: Path, workers: int, pack_size: int, database_url: str | None = None
) -> Iterator[Stack]:
    """Redis, the API and ``workers`` single-process CPU workers on one store (``database_url``, else a
    SQLite file in ``home``)."""
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    redis = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        cwd=home,
    )
    database_url = database_url or f"sqlite:///{home / 'bench.db'}"
    env = clean_env(
        XORJOBS_HOME=str(home),
        XORJOBS_DATABASE_URL=database_url,
        XORJOBS_BROKER_URL=f"redis://127.0.0.1:{port}/0",
        XORJOBS_PACK_SIZE=str(pack_size),
    )
    processes: list[ServiceProcess] = []
    stop_sampling = threading.Event()
    try:
        time.sleep(0.3)
        api, url = start_api(env, home)
        processes.append(api)
        env["XORJOBS_API_URL"] = url
        stack = Stack(env, database_url, [])
        for index in range(workers):
            stack.workers.append(start_worker(env, home, name=f"worker{index}", concurrency=1))
        processes.extend(stack.workers)

        def sample() -> None:
            while not stop_sampling.wait(0.2):
                stack.sample_memory()

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        yield stack
    finally:
        stop_sampling.set()
        for process in processes:
            process.stop()
        redis.kill()
        redis.wait()
