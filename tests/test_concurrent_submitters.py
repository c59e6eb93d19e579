"""Eight concurrent submitters × 100 jobs on SQLite, through the real API and a real worker (issue 3,
item 8): every job accounted for, no "database is locked", no 5xx."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx2

from tests.services import clean_env, start_api, start_worker, wait_until
from xorjobs.store import queries

SUBMITTERS = 8
POSTS_PER_SUBMITTER = 10
JOBS_PER_POST = 10


def test_eight_concurrent_submitters_lose_nothing_on_sqlite(
    tmp_path: Path,
    private_redis: tuple[str, Callable[[], None]],
) -> None:
    database_url = f"sqlite:///{tmp_path / 'store.db'}"
    env = clean_env(
        XORJOBS_HOME=str(tmp_path / "home"),
        XORJOBS_DATABASE_URL=database_url,
        XORJOBS_BROKER_URL=private_redis[0],
        XORJOBS_API_TOKEN="load",
    )
    worker = start_worker(env, tmp_path, concurrency=2)
    api, url = start_api(env, tmp_path)
    statuses: Counter[int] = Counter()
    sweep_ids: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(SUBMITTERS)

    def submitter(index: int) -> None:
        with httpx2.Client(base_url=url, headers={"Authorization": "Bearer load"}, timeout=120) as client:
            barrier.wait()
            for post in range(POSTS_PER_SUBMITTER):
                first_seed = (index * POSTS_PER_SUBMITTER + post) * JOBS_PER_POST
                response = client.post(
                    "/sweeps",
                    json={
                        "variants": ["nn"],
                        "seeds": list(range(first_seed, first_seed + JOBS_PER_POST)),
                        "steps": 20,
                    },
                )
                with lock:
                    statuses[response.status_code] += 1
                    if response.status_code == 201:
                        sweep_ids.append(response.json()["sweep_id"])

    try:
        threads = [threading.Thread(target=submitter, args=(index,)) for index in range(SUBMITTERS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert statuses == Counter({201: SUBMITTERS * POSTS_PER_SUBMITTER})  # no 5xx, nothing refused

        def all_succeeded() -> bool:
            return all(
                queries.sweep_status(database_url, s)["counts"]["succeeded"] == JOBS_PER_POST
                for s in sweep_ids
            )

        wait_until(all_succeeded, 300, "all 800 jobs to succeed", interval=1)
        seeds = [job["seed"] for s in sweep_ids for job in queries.sweep_status(database_url, s)["jobs"]]
        assert sorted(seeds) == list(range(SUBMITTERS * POSTS_PER_SUBMITTER * JOBS_PER_POST))  # each once
    finally:
        worker.stop()
        api.stop()
    logs = worker.log() + api.log()
    assert "database is locked" not in logs
    assert " 500 " not in api.log()
