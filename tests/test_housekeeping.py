"""Deleting sweeps (issue 5): ``xorjobs delete``, ``xorjobs prune`` and ``DELETE /sweeps/{id}``.

Run on SQLite and Postgres: the costs go with their jobs, other sweeps stay whole, a sweep with queued
or running jobs is refused (or cancelled first on request), and prune only takes finished sweeps that
ended long enough ago.
"""

from __future__ import annotations

import datetime as dt
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from tests.helpers import TOKEN, run_main, write_known_sweep
from xorjobs.api.main import create_app
from xorjobs.client.http import HttpBackend
from xorjobs.errors import InvalidSpec, NotFound, SweepActive
from xorjobs.spec import SweepSpec
from xorjobs.store import queries
from xorjobs.store.claims import claim_job
from xorjobs.store.clock import utcnow
from xorjobs.store.engine import read_session, write_session
from xorjobs.store.housekeeping import delete_sweep, parse_age, prune_sweeps
from xorjobs.store.results import Outcome, finish_job
from xorjobs.store.schema import ensure_schema
from xorjobs.store.sweeps import create_sweep
from xorjobs.store.tables import CostCurve, Job, Sweep

AUTH = {"Authorization": f"Bearer {TOKEN}"}


def write_finished_sweep(url: str, seeds: list[int], steps: int = 300) -> str:
    """A sweep whose jobs all succeeded, each with one cost per 100 steps."""
    ensure_schema(url)
    sweep = create_sweep(url, SweepSpec(variants=["nn"], seeds=seeds, steps=steps, log_every=100))
    for job in sweep.jobs:
        claim = claim_job(url, job.job_id, "test-worker", lease_seconds=60, max_attempts=3)
        assert claim is not None
        costs = [(step, 0.5) for step in range(0, steps, 100)]
        outcome = Outcome(costs, 0.5, [0.5] * 4, [0.0] * 4, 0.5, "cpu", "test", "test")
        finish_job(url, job.job_id, claim.attempt, outcome)
    return sweep.sweep_id


def rows_of(url: str, sweep_id: str) -> tuple[int, int, int]:
    """(sweeps, jobs, logged costs) the store holds for this sweep."""
    with read_session(url) as session:
        sweeps = session.scalar(select(func.count()).select_from(Sweep).where(Sweep.id == sweep_id)) or 0
        jobs = session.scalar(select(func.count()).select_from(Job).where(Job.sweep_id == sweep_id)) or 0
        costs = session.scalar(select(func.sum(CostCurve.points)).join(Job).where(Job.sweep_id == sweep_id))
    return sweeps, jobs, costs or 0


def age_sweep(url: str, sweep_id: str, days: float) -> None:
    """Pretend the sweep was created, and its jobs finished, ``days`` ago."""
    moment = utcnow() - dt.timedelta(days=days)
    with write_session(url) as session:
        session.execute(update(Sweep).where(Sweep.id == sweep_id).values(created_at=moment))
        session.execute(
            update(Job)
            .where(Job.sweep_id == sweep_id, Job.finished_at.is_not(None))
            .values(finished_at=moment)
        )


def test_delete_removes_the_sweep_its_jobs_and_their_costs_and_nothing_else(database_url: str) -> None:
    doomed = write_finished_sweep(database_url, [1, 2, 3])
    kept = write_finished_sweep(database_url, [4, 5])
    assert rows_of(database_url, doomed) == (1, 3, 9)
    deleted = delete_sweep(database_url, doomed)
    assert (deleted.sweep_id, deleted.jobs, deleted.costs, deleted.cancelled) == (doomed, 3, 9, 0)
    assert rows_of(database_url, doomed) == (0, 0, 0)
    assert rows_of(database_url, kept) == (1, 2, 6)
    with pytest.raises(NotFound):
        delete_sweep(database_url, doomed)


def test_a_sweep_with_queued_or_running_jobs_is_refused_unless_they_are_cancelled_first(
    database_url: str,
) -> None:
    sweep_id = write_known_sweep(database_url)  # one job still queued
    running = create_sweep(database_url, SweepSpec(variants=["nn"], seeds=[1, 2], steps=10)).sweep_id
    first_job = queries.sweep_status(database_url, running)["jobs"][0]["id"]
    assert claim_job(database_url, first_job, "test-worker", 60, 3) is not None
    for active, count in ((sweep_id, 1), (running, 2)):
        with pytest.raises(SweepActive) as refused:
            delete_sweep(database_url, active)
        # The store says what is wrong; each front end says how to proceed in its terms (flag or parameter).
        assert f"{count} queued or running" in str(refused.value)
        assert rows_of(database_url, active)[0] == 1
        deleted = delete_sweep(database_url, active, cancel_active=True)
        assert deleted.cancelled == count and rows_of(database_url, active) == (0, 0, 0)


def test_prune_takes_only_finished_sweeps_that_ended_long_enough_ago(database_url: str) -> None:
    old_finished = write_finished_sweep(database_url, [1, 2])
    recent_finished = write_finished_sweep(database_url, [3])
    old_active = create_sweep(database_url, SweepSpec(variants=["nn"], seeds=[1], steps=10)).sweep_id
    old_but_recently_ended = write_finished_sweep(database_url, [4])
    age_sweep(database_url, old_finished, days=40)
    age_sweep(database_url, recent_finished, days=2)
    age_sweep(database_url, old_active, days=40)
    with write_session(database_url) as session:  # created 40 days ago, finished yesterday
        session.execute(
            update(Sweep)
            .where(Sweep.id == old_but_recently_ended)
            .values(created_at=utcnow() - dt.timedelta(days=40))
        )
    planned = prune_sweeps(database_url, dt.timedelta(days=30), dry_run=True)
    assert [(sweep.sweep_id, sweep.jobs, sweep.costs) for sweep in planned] == [(old_finished, 2, 6)]
    assert rows_of(database_url, old_finished) == (1, 2, 6)  # a dry run deletes nothing
    pruned = prune_sweeps(database_url, dt.timedelta(days=30))
    assert [sweep.sweep_id for sweep in pruned] == [old_finished]
    assert rows_of(database_url, old_finished) == (0, 0, 0)
    for kept in (recent_finished, old_active, old_but_recently_ended):
        assert rows_of(database_url, kept)[0] == 1
    assert [sweep.sweep_id for sweep in prune_sweeps(database_url, dt.timedelta(days=1))] == [recent_finished]


@pytest.mark.parametrize(
    ("text", "expected"),
    [("30d", dt.timedelta(days=30)), ("12h", dt.timedelta(hours=12)), ("90m", dt.timedelta(minutes=90)),
     ("45s", dt.timedelta(seconds=45)), ("2w", dt.timedelta(weeks=2)), (" 7D ", dt.timedelta(days=7))],
)  # fmt: skip
def test_ages_read_like_30d(text: str, expected: dt.timedelta) -> None:
    assert parse_age(text) == expected


@pytest.mark.parametrize("text", ["30", "d", "-1d", "1.5d", "30y", "", "99999999999999w"])
def test_bad_ages_are_refused_naming_the_flag(text: str) -> None:
    with pytest.raises(InvalidSpec) as refused:
        parse_age(text, "--older-than")
    assert refused.value.field == "--older-than"


# --- the CLI ---------------------------------------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    ensure_schema(url)
    monkeypatch.setenv("XORJOBS_DATABASE_URL", url)
    return url


def answer(monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(text))


def test_delete_asks_first_and_does_nothing_on_no(
    store: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    sweep_id = write_finished_sweep(store, [1, 2])
    answer(monkeypatch, "n\n")
    code, out, err = run_main(["delete", sweep_id], monkeypatch, capsys)
    assert code == 1 and "delete sweep" in out + err and "2 job(s)" in out + err
    assert rows_of(store, sweep_id) == (1, 2, 6)
    answer(monkeypatch, "y\n")
    code, out, _ = run_main(["delete", sweep_id], monkeypatch, capsys)
    assert code == 0 and f"deleted sweep {sweep_id}: 2 job(s), 6 logged cost(s)" in out
    assert rows_of(store, sweep_id) == (0, 0, 0)
    code, _, err = run_main(["delete", sweep_id, "--yes"], monkeypatch, capsys)
    assert code == 3 and f"no sweep {sweep_id}" in err


def test_delete_refuses_a_running_sweep_with_one_clear_line_and_cancels_on_request(
    store: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    sweep_id = write_known_sweep(store)
    code, out, err = run_main(["delete", sweep_id, "--yes"], monkeypatch, capsys)
    assert code == 1 and out == "" and len(err.strip().splitlines()) == 1
    assert "queued or running" in err and f"xorjobs cancel {sweep_id}" in err and "--cancel" in err
    code, out, _ = run_main(["delete", sweep_id, "--yes", "--cancel", "--json"], monkeypatch, capsys)
    assert code == 0 and json.loads(out)["deleted"][0]["cancelled"] == 1
    assert rows_of(store, sweep_id) == (0, 0, 0)


def test_prune_lists_with_dry_run_asks_and_deletes(
    store: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    old = write_finished_sweep(store, [1])
    recent = write_finished_sweep(store, [2])
    age_sweep(store, old, days=31)
    code, out, _ = run_main(["prune", "--older-than", "30d", "--dry-run"], monkeypatch, capsys)
    assert code == 0 and f"would delete sweep {old}" in out and recent not in out
    assert rows_of(store, old)[0] == 1
    answer(monkeypatch, "n\n")
    code, _, _ = run_main(["prune", "--older-than", "30d"], monkeypatch, capsys)
    assert code == 1 and rows_of(store, old)[0] == 1
    answer(monkeypatch, "y\n")
    code, out, _ = run_main(["prune", "--older-than", "30d"], monkeypatch, capsys)
    assert code == 0 and f"deleted sweep {old}" in out and rows_of(store, old) == (0, 0, 0)
    code, out, _ = run_main(["prune", "--older-than", "30d", "--yes"], monkeypatch, capsys)
    assert code == 0 and "no finished sweep ended more than 30d ago" in out
    code, out, err = run_main(["prune", "--older-than", "a month"], monkeypatch, capsys)
    assert code == 2 and "--older-than" in err and len(err.strip().splitlines()) == 1
    assert rows_of(store, recent)[0] == 1


# --- the API ---------------------------------------------------------------------------------------


@pytest.fixture
def api_client(store: str) -> Iterator[TestClient]:
    from xorjobs.settings import Settings

    with TestClient(create_app(Settings(database_url=store, api_token=TOKEN))) as client:
        yield client


def test_the_api_deletes_refuses_with_409_and_prunes_like_the_cli(store: str, api_client: TestClient) -> None:
    finished = write_finished_sweep(store, [1, 2])
    active = write_known_sweep(store)
    assert api_client.delete(f"/sweeps/{finished}").status_code == 401
    response = api_client.delete(f"/sweeps/{finished}", headers=AUTH)
    assert response.status_code == 200
    assert response.json()["deleted"][0] | {"created_at": None} == {
        "sweep_id": finished, "name": None, "created_at": None, "jobs": 2, "costs": 6, "cancelled": 0,
    }  # fmt: skip
    assert api_client.delete(f"/sweeps/{finished}", headers=AUTH).status_code == 404
    refused = api_client.delete(f"/sweeps/{active}", headers=AUTH)
    assert refused.status_code == 409 and "queued or running" in refused.json()["detail"]
    over_http = HttpBackend("http://testserver", TOKEN, client=api_client)
    with pytest.raises(SweepActive):
        over_http.delete_sweep(active, cancel_active=False)
    assert over_http.delete_sweep(active, cancel_active=True)["deleted"][0]["cancelled"] == 1
    old = write_finished_sweep(store, [3])
    age_sweep(store, old, days=10)
    dry = api_client.post("/sweeps/prune?older_than_seconds=86400&dry_run=true", headers=AUTH).json()
    assert dry["dry_run"] is True and [sweep["sweep_id"] for sweep in dry["deleted"]] == [old]
    assert over_http.prune(86400, dry_run=False)["deleted"][0]["sweep_id"] == old
    assert rows_of(store, old) == (0, 0, 0)
    assert api_client.post("/sweeps/prune?older_than_seconds=-1", headers=AUTH).status_code == 422
