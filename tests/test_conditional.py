"""Conditional GETs for a sweep's summary and plot (issue 13 §2): the dashboard asks for them every few
seconds from every tab, and each reads every cost of the sweep. An unchanged sweep is a 304, or the body
built for another tab, without a cost being read; any change the views would show makes a new ETag."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.helpers import TOKEN, write_known_sweep
from xorjobs.api.main import create_app
from xorjobs.settings import Settings
from xorjobs.store import queries
from xorjobs.store.claims import claim_job
from xorjobs.store.costs import record_costs
from xorjobs.store.export import curves_by_job
from xorjobs.store.versions import sweep_version

AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def known(tmp_path: Path) -> tuple[str, str]:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    return url, write_known_sweep(url)


@pytest.fixture
def client(known: tuple[str, str]) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(database_url=known[0], api_token=TOKEN))) as test_client:
        yield test_client


@pytest.fixture
def cost_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Each sweep read of every cost (the summary's and the plot's), by sweep id."""
    reads: list[str] = []
    real = curves_by_job

    def counted(url: str, sweep_id: str, *args: Any) -> Any:
        reads.append(sweep_id)
        return real(url, sweep_id, *args)

    monkeypatch.setattr("xorjobs.service.curves_by_job", counted)  # what Service.summary/sweep_figure call
    return reads


@pytest.mark.parametrize("path", ["summary?by=variant", "plot.png?by=variant"])
def test_an_unchanged_sweep_is_not_read_again(
    client: TestClient, known: tuple[str, str], cost_reads: list[str], path: str
) -> None:
    url = f"/sweeps/{known[1]}/{path}"
    first = client.get(url, headers=AUTH)
    etag = first.headers["etag"]
    assert first.status_code == 200 and first.headers["cache-control"] == "private, no-cache"
    again = client.get(url, headers={**AUTH, "If-None-Match": etag})
    assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == etag
    other_tab = client.get(url, headers=AUTH)  # no tag of its own: the body built for the first
    assert other_tab.status_code == 200 and other_tab.content == first.content
    assert cost_reads == [known[1]]
    # Another grouping is another view; a change to the sweep (its queued job cancelled) a new version.
    assert client.get(url.replace("variant", "lr"), headers=AUTH).headers["etag"] != etag
    client.post(f"/sweeps/{known[1]}/cancel", headers=AUTH)
    changed = client.get(url, headers={**AUTH, "If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["etag"] != etag
    assert client.get("/sweeps/sw-nope/summary", headers=AUTH).status_code == 404


def test_the_version_moves_while_a_running_job_logs_costs(known: tuple[str, str]) -> None:
    url, sweep_id = known
    queued = next(job for job in queries.sweep_status(url, sweep_id)["jobs"] if job["state"] == "queued")
    before = sweep_version(url, sweep_id)
    claim = claim_job(url, queued["id"], "test-worker", lease_seconds=60, max_attempts=3)
    assert claim is not None
    running = sweep_version(url, sweep_id)
    record_costs(url, queued["id"], claim.attempt, [(0, 0.7), (100, 0.6)], lease_seconds=60)
    logged = sweep_version(url, sweep_id)
    assert len({before, running, logged}) == 3  # its curve grows on the live plot
    assert sweep_version(url, "sw-nope") is None
