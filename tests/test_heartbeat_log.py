"""A pack's heartbeat through a store outage logs one line per failed beat and one when it recovers
(issue 14 §8: noise). The outage is real: Postgres refuses new connections to the database
(``ALLOW_CONNECTIONS false``) and the heartbeat's own backend is terminated."""

from __future__ import annotations

import logging
import time

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from tests.services import wait_until
from xorjobs.spec import validate_spec
from xorjobs.store.claims import claim_job
from xorjobs.store.schema import upgrade
from xorjobs.store.sweeps import create_sweep
from xorjobs.worker.heartbeat import Heartbeat


@pytest.mark.postgres
def test_a_heartbeat_through_an_outage_logs_one_line_per_failure_and_one_on_recovery(
    postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    upgrade(postgres_url)
    sweep = create_sweep(postgres_url, validate_spec({"variants": ["nn"], "seeds": [1, 2], "steps": 300}))
    claims = [claim_job(postgres_url, job.job_id, "w", 60, 3) for job in sweep.jobs]
    assert None not in claims
    database = make_url(postgres_url).database
    admin = create_engine(make_url(postgres_url).set(database="postgres"), isolation_level="AUTOCOMMIT")
    caplog.set_level(logging.INFO)
    try:
        with (
            Heartbeat(postgres_url, [claim for claim in claims if claim], 60, 0.2) as heartbeat,
            admin.connect() as db,
        ):
            time.sleep(0.5)
            db.execute(text(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false'))
            db.execute(
                text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :name"),
                {"name": database},
            )
            wait_until(lambda: _lines(caplog, "heartbeat failed") >= 3, 20, "three failed beats")
            db.execute(text(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true'))
            wait_until(lambda: _lines(caplog, "renewed again") == 1, 20, "the recovery line")
            time.sleep(0.6)  # beats after the recovery say nothing
            assert heartbeat.lost == set()
    finally:
        admin.dispose()
    heartbeat_records = [record for record in caplog.records if record.name == "xorjobs.worker.heartbeat"]
    assert all(record.exc_info is None and "\n" not in record.getMessage() for record in heartbeat_records)
    assert _lines(caplog, "renewed again") == 1
    failures = _lines(caplog, "heartbeat failed")
    assert f"after {failures} failed beat(s)" in next(
        r.getMessage() for r in heartbeat_records if "renewed again" in r.getMessage()
    )
    # No other logger printed a traceback for the beats either (e.g. the pool resetting a dead connection).
    assert not [record for record in caplog.records if record.exc_info is not None]


def _lines(caplog: pytest.LogCaptureFixture, words: str) -> int:
    return sum(words in record.getMessage() for record in caplog.records)
