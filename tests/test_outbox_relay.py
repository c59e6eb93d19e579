"""The outbox relay publishes each job once, however many workers relay (issue 10 section 8).

Three real workers share a store and a private Redis. Their training processes are stopped (SIGSTOP)
so nothing consumes: every message published stays on the broker, waiting on the queue's list or
delivered to a stopped worker and unacked, and the count of both is the count of messages published.
First a submitter whose broker is unreachable leaves 200 jobs in the outbox, and the three relays
publish them; then Redis is restarted empty with those 200 jobs queued, and the three recovery
processes re-publish what it lost. Each time the count must be 200.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from tests.helpers import Cluster, broker_messages, pool_children, record_figure
from tests.services import ServiceProcess, free_port, start_worker, wait_until
from xorjobs.service import Service
from xorjobs.spec import validate_spec
from xorjobs.store import queries

JOBS = 200
SETTLE_PASSES = 12
"""Reap passes (0.5 s each here) the count must hold still for before it is read: a relay that
published late would show within a few."""


def settled_count(url: str, at_least: int, timeout: float) -> int:
    """The broker's message count once it reached ``at_least`` and then stopped changing."""
    wait_until(lambda: broker_messages(url) >= at_least, timeout, f"{at_least} messages on the broker")
    last, since = broker_messages(url), time.monotonic()
    while time.monotonic() - since < SETTLE_PASSES * 0.5:
        time.sleep(0.25)
        now = broker_messages(url)
        if now != last:
            last, since = now, time.monotonic()
    return last


@pytest.fixture
def paused_workers(
    tmp_path: Path,
    database_url: str,
    private_redis: tuple[str, Callable[[], None]],
) -> Iterator[tuple[Cluster, list[ServiceProcess]]]:
    """Three workers whose training processes are stopped: only their consumers and recovery run."""
    cluster = Cluster(tmp_path, database_url, private_redis[0])
    workers: list[ServiceProcess] = []
    try:
        for index in range(3):
            workers.append(start_worker(cluster.env, tmp_path, name=f"w{index}"))
        cluster.workers = workers
        for worker in workers:
            for child in pool_children(worker):
                child.send_signal(signal.SIGSTOP)
        yield cluster, workers
    finally:
        for worker in workers:
            for child in psutil.Process(worker.pid).children(recursive=True):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child.pid, signal.SIGCONT)
        cluster.stop()


def test_three_relays_publish_each_job_once(
    paused_workers: tuple[Cluster, list[ServiceProcess]],
    private_redis: tuple[str, Callable[[], None]],
) -> None:
    cluster, _workers = paused_workers
    url, restart = private_redis
    label = cluster.url.split(":")[0]
    # 1. The outbox: a submitter whose broker was unreachable left 200 jobs unpublished.
    cut_off = Service(
        cluster.settings.model_copy(update={"broker_url": f"redis://127.0.0.1:{free_port()}/0"})
    )
    spec = validate_spec({"variants": ["nn"], "seeds": list(range(JOBS)), "steps": 200})
    sweep_id = cut_off.ready().submit(spec)["sweep_id"]
    published = settled_count(url, JOBS, timeout=60)
    record_figure(f"messages_from_outbox_3_relays[{label}]", published)
    assert published == JOBS
    # 2. Redis restarted empty with those 200 jobs queued: the census finds them lost, once.
    restart()
    published = settled_count(url, JOBS, timeout=60)
    record_figure(f"messages_after_redis_restart_3_relays[{label}]", published)
    assert published == JOBS
    assert queries.sweep_status(cluster.url, sweep_id)["counts"]["queued"] == JOBS
