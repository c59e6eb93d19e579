"""The Python client (issue 12 §5): ``from xorjobs import Client``, in this process on the embedded store
(``wait`` trains here, twice in one process, on two stores) and over HTTP against a real API and worker."""

from __future__ import annotations

import builtins
import http.server
import os
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import Cluster, run_main
from tests.services import start_api
from xorjobs import Client
from xorjobs.client import Job, SweepStatus
from xorjobs.errors import InvalidSpec, NotFound
from xorjobs.settings import Settings, get_settings


def test_embedded_submit_and_wait_twice_in_one_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As in a notebook: two sweeps trained by this process, one after the other, then a client on a
    second XORJOBS_HOME in the same process trains into its own store (not the first one's)."""
    client = Client()
    assert client.trains_here and not client.over_http
    first = client.submit(variants=["nn"], seeds=[1, 2], steps=201, log_every=100)
    status = first.wait(progress=False)
    assert isinstance(status, SweepStatus) and status.ok and status.counts["succeeded"] == 2
    second = client.submit(variants=["backprop"], lrs=[0.5, 1.0], steps=101)
    assert second.wait(progress=False).ok

    results = first.results(sort="final_cost")
    assert [type(job) for job in results] == [Job, Job] and all(job.state == "succeeded" for job in results)
    assert results[0].final_cost is not None and results[0].final_cost <= (results[1].final_cost or 0)
    assert results[0].costs is not None and [step for step, _ in results[0].costs] == [0, 100, 200]
    summary = second.summary(by="lr")
    assert [group["lr"] for group in summary.groups] == [0.5, 1.0]
    assert all(group["jobs"] == 1 for group in summary.groups)
    assert [job.seed for job in first.status(seeds=[2]).jobs] == [2]

    other_home = tmp_path / "other-home"
    monkeypatch.setenv("XORJOBS_HOME", str(other_home))
    get_settings.cache_clear()
    other = Client()
    third = other.submit(variants=["nn"], steps=11)
    assert third.wait(progress=False).ok
    assert {sweep.sweep_id for sweep in other.sweeps()} == {third.id}
    assert {sweep.sweep_id for sweep in client.sweeps()} == {first.id, second.id}
    with pytest.raises(NotFound):
        client.sweep(third.id).status()


def test_embedded_retry_cancel_and_bad_input() -> None:
    client = Client(settings=Settings(home=Path(os.environ["XORJOBS_HOME"])))
    sweep = client.submit({"variants": ["nn"], "seeds": [1, 2]}, steps=11)
    assert len(sweep.cancel()) == 2
    assert sweep.status().counts["cancelled"] == 2
    assert sorted(sweep.retry()) == sorted(job.id for job in sweep.status().jobs)
    assert sweep.wait(progress=False).ok
    with pytest.raises(InvalidSpec, match="steps"):
        client.submit(variants=["nn"], steps=0)


def test_results_frame_needs_pandas(monkeypatch: pytest.MonkeyPatch) -> None:
    client = Client()
    sweep = client.submit(variants=["nn"], steps=11)
    sweep.wait(progress=False)
    # pandas is a dev dependency, so the frame itself is always built here.
    frame = sweep.results_frame()
    records = sweep.results()
    assert list(frame["variant"]) == ["nn"] and list(frame["id"]) == [record.id for record in records]
    assert frame["final_cost"].tolist() == [record.final_cost for record in records]
    real_import = builtins.__import__

    def no_pandas(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.split(".")[0] == "pandas":
            raise ModuleNotFoundError("No module named 'pandas'", name="pandas")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pandas)
    with pytest.raises(ImportError, match=r"pip install 'xorjobs\[pandas\]'"):
        sweep.to_pandas()


def test_the_client_over_http_against_a_real_api_and_worker(sqlite_cluster: Cluster, tmp_path: Path) -> None:
    env = {**sqlite_cluster.env, "XORJOBS_API_TOKEN": "client-token"}
    api, url = start_api(env, tmp_path)
    try:
        sqlite_cluster.start_worker("worker")
        client = Client(url, "client-token")
        assert client.over_http and not client.trains_here
        sweep = client.submit(variants=["nn", "backprop"], seeds=[3], steps=201, key="client-test")
        assert sweep.created
        status = sweep.wait(progress=False, timeout=180)
        assert status.ok and status.total == 2
        again = client.submit(variants=["nn", "backprop"], seeds=[3], steps=201, key="client-test")
        assert again.id == sweep.id and not again.created
        results = {job.variant: job for job in sweep.results()}
        assert set(results) == {"nn", "backprop"}
        assert all(job.accuracy is not None and job.hypothesis is not None for job in results.values())
        assert client.job(results["nn"].id).final_cost == results["nn"].final_cost
        assert client.costs(results["nn"].id) == list(results["nn"].costs or ())
        assert client.sweep().id == sweep.id  # the latest
        assert sweep.summary(by=["variant"]).groups[0]["variant"] == "nn"
        with pytest.raises(NotFound):
            client.sweep("sw-000000000000").status()
        # The settings' URL and token work the same (XORJOBS_API_URL / XORJOBS_API_TOKEN).
        from_settings = Client(settings=Settings(api_url=url, api_token="client-token"))
        assert from_settings.over_http and from_settings.sweep(sweep.id).status().ok
    finally:
        api.stop()


def test_wait_timeout_names_the_states_in_whole_words() -> None:
    """The TimeoutError of ``wait(timeout=)`` says 'running 99', as the CLI does (it said 'runn=99')."""
    from xorjobs.client.progress import poll_until_done

    status = {"sweep_id": "sw-0123456789ab", "counts": {"queued": 1, "running": 99, "succeeded": 0}}
    with pytest.raises(TimeoutError) as raised:
        poll_until_done(lambda: status, progress=False, interval=0.01, timeout=0)
    assert str(raised.value) == "sweep sw-0123456789ab is not finished after 0 s: queued 1, running 99"


class _NotTheApi(http.server.BaseHTTPRequestHandler):
    """Another web server at XORJOBS_API_URL: HTML pages, and FastAPI's own 404 for a path it has no route
    for (the answer of an xorjobs API whose URL was given with a wrong path, ``http://host:8000/api``)."""

    def do_POST(self) -> None:
        self.send_error(501)  # http.server's HTML page

    def do_GET(self) -> None:
        if self.path.startswith("/sweeps/"):
            status, kind, body = 404, "application/json", b'{"detail":"Not Found"}'
        else:
            status, kind, body = (
                (200 if self.path.startswith("/sweeps") else 404),
                "text/html",
                b"<html>\n</html>",
            )
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.mark.parametrize(
    "args",
    [["sweeps"], ["status", "sw-0123456789ab"], ["show", "job-0123456789abcdef"], ["cancel", "sw-01234"]],
)
def test_a_url_that_is_no_xorjobs_api_is_one_line_exit_4(
    args: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """It printed the HTML page (exit 3 or 1), or a JSONDecodeError traceback for a 200 page."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NotTheApi)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("XORJOBS_API_URL", f"http://127.0.0.1:{server.server_port}")
        code, _, err = run_main(args, monkeypatch, capsys)
    finally:
        server.shutdown()
    assert code == 4 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    url = f"http://127.0.0.1:{server.server_port}"
    says = f"the API at {url} answered 501" if args[0] == "cancel" else f"the server at {url} is not an"
    assert err.startswith(f"error: {says}"), err


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda s: s.results(sort="bogus"), "sort: Input should be 'final_cost', 'accuracy', 'seed' or 'lr'"),
        (lambda s: s.results(limit=0), "limit: Input should be greater than or equal to 1 (got 0)"),
        (lambda s: s.status(states=["done"]), "states.0: Input should be 'queued', 'running'"),
        (lambda s: s.results(lrs=["x"]), "lrs.0: 'x' is not a number"),
        (lambda s: s.summary(seeds=[-1]), "seeds"),
        (lambda s: s.client.sweeps(states=["x"]), "states.0: Input should be 'queued'"),
    ],
)
def test_a_bad_filter_or_order_is_invalid_spec_naming_the_keyword(call: Any, error: str) -> None:
    """They raised pydantic's multi-line ValidationError (or a ValueError), and limit=0 returned every job;
    refused before anything is sent (nothing listens on this port)."""
    sweep = Client("http://127.0.0.1:9", None).sweep("sw-0123456789ab")
    with pytest.raises(InvalidSpec) as raised:
        call(sweep)
    assert str(raised.value).startswith(error) and "\n" not in str(raised.value), raised.value


def test_a_jobs_early_stopping_fields_are_attributes() -> None:
    # They were left in Job.extra, so job.steps_trained was an AttributeError. Found by qa2.
    row = {"id": "job-1", "sweep_id": "sw-1", "variant": "nn", "seed": 1, "lr": 1.0, "steps": 3000}
    row |= {"log_every": 7, "device": "cpu", "queue": "cpu", "state": "succeeded", "stop_below": 0.05}
    row |= {"stop_when_solved": True, "steps_trained": 666, "stopped_at_step": 665, "stop_reason": "solved"}
    job = Job.from_json(row)
    assert (job.stop_below, job.stop_when_solved, job.steps_trained) == (0.05, True, 666)
    assert (job.stopped_at_step, job.stop_reason, dict(job.extra)) == (665, "solved", {})
