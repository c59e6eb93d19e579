"""The "no live worker serves queue X" warning, answered off the submit path (issue 10, section 3).

Real Redis and a real ``xorjobs worker`` process. How long a submit takes is measured in
``bench/submit_latency.py``, not here; these tests check that the warning stays right.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.services import ServiceProcess, clean_env, start_worker, wait_until
from xorjobs.api.main import create_app
from xorjobs.queue import make_celery
from xorjobs.queue_watch import MAX_AGE_SECONDS, QueueWatch
from xorjobs.settings import Settings
from xorjobs.spec import validate_spec

NO_WORKER = "no live worker serves queue"


@pytest.fixture
def cpu_worker(tmp_path: Path, redis_url: str) -> Iterator[tuple[Settings, ServiceProcess]]:
    database_url = f"sqlite:///{tmp_path / 'store.db'}"
    env = clean_env(
        XORJOBS_HOME=str(tmp_path / "home"), XORJOBS_DATABASE_URL=database_url, XORJOBS_BROKER_URL=redis_url
    )
    worker = start_worker(env, tmp_path)  # upgrades the store first, as `xorjobs db upgrade` would
    settings = Settings(home=tmp_path / "home", database_url=database_url, broker_url=redis_url)
    try:
        yield settings, worker
    finally:
        worker.stop()


def test_the_api_warns_only_for_a_queue_no_live_worker_serves(
    cpu_worker: tuple[Settings, ServiceProcess],
) -> None:
    settings, worker = cpu_worker
    with TestClient(create_app(settings)) as client:
        served = client.post("/sweeps", json={"variants": ["nn"], "seeds": [1, 2, 3], "steps": 10})
        assert served.status_code == 201, served.text
        assert served.json()["warnings"] == []  # the cpu worker answered the API's first broadcast
        unserved = client.post("/sweeps", json={"variants": ["nn"], "device": "cuda", "steps": 10})
        assert any(f"{NO_WORKER} 'gpu'" in warning for warning in unserved.json()["warnings"])

        # The answer is refreshed in the background: once the worker is gone, submits say so.
        worker.stop()

        def warned() -> bool:
            body = client.post("/sweeps", json={"variants": ["nn"], "steps": 10}).json()
            return any(f"{NO_WORKER} 'cpu'" in warning for warning in body["warnings"])

        wait_until(
            warned, timeout=MAX_AGE_SECONDS * 6, what="the warning after the worker stopped", interval=1
        )


def test_an_in_process_submit_asks_the_workers_itself(cpu_worker: tuple[Settings, ServiceProcess]) -> None:
    """Without the API's background refresh (a one-shot CLI process), the first submit asks."""
    from xorjobs.service import Service

    settings, _ = cpu_worker
    service = Service(settings).ready()
    assert service.submit(validate_spec({"variants": ["nn"], "steps": 10}))["warnings"] == []
    gpu = service.submit(validate_spec({"variants": ["nn"], "device": "cuda", "steps": 10}))
    assert any(f"{NO_WORKER} 'gpu'" in warning for warning in gpu["warnings"])


def test_a_broadcast_that_fails_is_logged_not_hidden(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app = make_celery(Settings(home=tmp_path / "home", broker_url="redis://127.0.0.1:1/0"))
    watch = QueueWatch(app)
    with caplog.at_level(logging.WARNING, logger="xorjobs.queue_watch"):
        assert not watch.serves("cpu")  # nobody could answer: the submit then warns
    assert any("cannot ask the workers" in record.getMessage() for record in caplog.records), caplog.text
