"""The consumer-side settling of messages whose jobs have nothing to claim (worker.skip_finished), on a
real SQLite store."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from sqlalchemy import update

from xorjobs.settings import get_settings
from xorjobs.spec import SweepSpec
from xorjobs.store.claims import claim_job
from xorjobs.store.clock import utcnow
from xorjobs.store.engine import write_session
from xorjobs.store.results import fail_job
from xorjobs.store.schema import ensure_schema
from xorjobs.store.sweeps import create_sweep
from xorjobs.store.tables import Job
from xorjobs.worker.liveness import holder_name
from xorjobs.worker.skip_finished import has_nothing_to_claim, job_id_of


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ([["job-abc"], {}, {"callbacks": None}], "job-abc"),  # protocol 2: (args, kwargs, embed)
        ({"args": ["job-abc"], "kwargs": {}}, "job-abc"),  # protocol 1
        ([[], {}, {}], None),
        ([[42], {}, {}], None),
        ({"task": "x"}, None),
    ],
)
def test_job_id_of_reads_the_only_argument(payload: object, expected: str | None) -> None:
    assert job_id_of(SimpleNamespace(payload=payload)) == expected


def test_job_id_of_an_undecodable_message_is_none() -> None:
    class Broken:
        @property
        def payload(self) -> object:
            raise ValueError("not JSON")

    assert job_id_of(Broken()) is None


def test_only_jobs_with_nothing_to_claim_are_settled_in_the_consumer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XORJOBS_HOME", str(tmp_path))
    get_settings.cache_clear()
    url = get_settings().resolved_database_url
    ensure_schema(url)
    spec = SweepSpec(seeds=[1, 2, 3, 4, 5], variants=["nn"])
    queued, running, expired, orphaned, failed = create_sweep(url, spec).jobs
    assert (
        claim_job(url, running.job_id, "w@h/1", 60, 3) is not None
    )  # a live lease, holder not ours to judge
    assert claim_job(url, expired.job_id, "w@h/1", 60, 3) is not None
    with write_session(url) as session:
        session.execute(
            update(Job)
            .where(Job.id == expired.job_id)
            .values(lease_expires_at=utcnow() - dt.timedelta(seconds=1))
        )
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead_holder = holder_name("cpu-1@here", pid=int(gone.stdout))  # in our PID namespace, and exited
    assert claim_job(url, orphaned.job_id, dead_holder, 60, 3) is not None
    claim = claim_job(url, failed.job_id, "w@h/1", 60, 3)
    assert claim is not None and fail_job(url, failed.job_id, claim.attempt, "boom")

    assert has_nothing_to_claim(running.job_id)  # a pack's member: its message is acked at once
    assert has_nothing_to_claim(failed.job_id)
    assert not has_nothing_to_claim(queued.job_id)
    assert not has_nothing_to_claim(expired.job_id)  # a takeover: the pool claims it
    assert not has_nothing_to_claim(orphaned.job_id)  # its holder died: the pool claims it at once
    assert not has_nothing_to_claim("job-unknown")  # the task path reports a foreign id loudly
    get_settings.cache_clear()
