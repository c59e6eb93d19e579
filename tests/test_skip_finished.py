"""The consumer-side skip of finished jobs' messages (worker.skip_finished), on a real SQLite store."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from xorjobs.settings import get_settings
from xorjobs.spec import SweepSpec
from xorjobs.store.claims import claim_job
from xorjobs.store.results import fail_job
from xorjobs.store.schema import ensure_schema
from xorjobs.store.sweeps import create_sweep
from xorjobs.worker.skip_finished import is_finished, job_id_of


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


def test_only_finished_jobs_are_skipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XORJOBS_HOME", str(tmp_path))
    get_settings.cache_clear()
    url = get_settings().resolved_database_url
    ensure_schema(url)
    queued, running, failed = create_sweep(url, SweepSpec(seeds=[1, 2, 3], variants=["nn"])).jobs
    assert claim_job(url, running.job_id, "w@h/1", 60, 3) is not None
    claim = claim_job(url, failed.job_id, "w@h/1", 60, 3)
    assert claim is not None and fail_job(url, failed.job_id, claim.attempt, "boom")
    assert not is_finished(queued.job_id)
    assert not is_finished(running.job_id)  # a running job's message may be a takeover: the pool decides
    assert is_finished(failed.job_id)
    assert not is_finished("job-unknown")  # the task path reports a foreign id loudly
    get_settings.cache_clear()
