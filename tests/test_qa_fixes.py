"""Small breaks a new-user trial found (qa findings F4, F5, F7, F8), each checked as the user met it."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import run_main, write_known_sweep
from xorjobs.errors import GOT_MAX_CHARS, got

MP = pytest.MonkeyPatch
Capsys = pytest.CaptureFixture[str]


def test_a_second_file_is_refused_naming_the_flag(tmp_path: Path, monkeypatch: MP, capsys: Capsys) -> None:
    (tmp_path / "a.yaml").write_text("steps: 10\n")
    (tmp_path / "b.yaml").write_text("steps: 20\n")
    for command in ("submit", "run"):
        code, out, err = run_main([command, "-f", "a.yaml", "--file", "b.yaml"], monkeypatch, capsys)
        assert (code, out) == (2, ""), err  # it submitted b.yaml only, exit 0
        assert err.strip() == "error: --file: given 2 times (a.yaml, b.yaml); give one sweep file"


def test_a_long_offending_value_is_cut(tmp_path: Path, monkeypatch: MP, capsys: Capsys) -> None:
    assert got("x") == "(got 'x')"
    assert len(got("y" * 1000)) == len("(got )") + GOT_MAX_CHARS and got("y" * 1000).endswith("…)")
    (tmp_path / "long.yaml").write_text('name: ["' + "x" * 300 + '", 1]\n')
    code, _, err = run_main(["submit", "-f", "long.yaml"], monkeypatch, capsys)
    assert code == 2 and err.startswith("error: name (long.yaml line 1): Input should be a valid string")
    assert err.strip().endswith("…)") and len(err.strip()) < 200, err  # the whole 300-char list before


def test_a_bad_summary_or_plot_query_is_a_422_of_the_usual_shape(sqlite_url: str) -> None:
    from fastapi.testclient import TestClient

    from xorjobs.api.main import create_app
    from xorjobs.settings import Settings
    from xorjobs.store.schema import upgrade

    upgrade(sqlite_url)
    sweep_id = write_known_sweep(sqlite_url)
    with TestClient(create_app(Settings(database_url=sqlite_url))) as client:
        for path in ("summary?by=bogus", "summary?threshold=-1", "plot.png?by=bogus"):
            answer = client.get(f"/sweeps/{sweep_id}/{path}")
            body = answer.json()
            assert answer.status_code == 422, body
            field = "query.threshold" if "threshold" in path else "query.by"
            assert body["detail"].startswith(f"{field}: "), body  # it was a bare 'by: ...', no errors list
            assert [error["field"] for error in body["errors"]] == [field]


def test_a_colon_lr_names_the_sampled_forms(monkeypatch: MP, capsys: Capsys) -> None:
    for token in ("normal:0.1:1:3", "LogUniform:1e-3:1:3"):
        code, _, err = run_main(["submit", "--lr", token], monkeypatch, capsys)
        assert code == 2 and err.strip() == (
            f"error: --lr: {token!r} is neither a rate nor a sampled form: write loguniform:LOW:HIGH:COUNT "
            "or uniform:LOW:HIGH:COUNT (lower case)"
        )  # it said "is not a decimal number (like 0.5 or 1e-3)"


def test_a_sweep_id_where_a_job_id_goes_says_so(sqlite_url: str, monkeypatch: MP, capsys: Capsys) -> None:
    from xorjobs.store.schema import upgrade

    upgrade(sqlite_url)
    monkeypatch.setenv("XORJOBS_DATABASE_URL", sqlite_url)
    for command in ("show", "costs", "verify"):
        code, _, err = run_main([command, "sw-0123456789ab"], monkeypatch, capsys)
        assert (code, err.strip()) == (
            3,
            "error: no job sw-0123456789ab (this takes a job id, which starts with job-)",
        )


def test_a_client_url_that_is_no_http_url_is_invalid_spec() -> None:
    from xorjobs.client import Client
    from xorjobs.errors import InvalidSpec

    for url in ("notaurl", "ftp://x/", "http://"):
        with pytest.raises(InvalidSpec, match=r"^url: .* use http://HOST:PORT"):  # it was Unreachable
            Client(url)


def test_the_page_of_an_unknown_job_is_a_404_that_says_so(sqlite_url: str) -> None:
    from fastapi.testclient import TestClient

    from xorjobs.api.main import create_app
    from xorjobs.settings import Settings
    from xorjobs.store.schema import upgrade

    upgrade(sqlite_url)
    sweep_id = write_known_sweep(sqlite_url)
    with TestClient(create_app(Settings(database_url=sqlite_url))) as client:
        job_id = client.get(f"/sweeps/{sweep_id}").json()["jobs"][0]["id"]
        assert client.get(f"/ui/jobs/{job_id}").status_code == 200
        missing = client.get("/ui/jobs/job-0000000000000000")
        assert missing.status_code == 404  # a 200 with an empty record table
        assert "no job job-0000000000000000" in missing.text and 'id="record"' not in missing.text


def test_a_body_that_is_no_json_says_so(sqlite_url: str) -> None:
    from fastapi.testclient import TestClient

    from xorjobs.api.main import create_app
    from xorjobs.settings import Settings
    from xorjobs.store.schema import upgrade

    upgrade(sqlite_url)
    with TestClient(create_app(Settings(database_url=sqlite_url))) as client:
        broken = client.post("/sweeps", content=b"{bad", headers={"content-type": "application/json"})
        assert broken.status_code == 422 and broken.json()["detail"].startswith(
            "body: not valid JSON"
        )  # body.1
        yaml = client.post("/sweeps", content=b"steps: 10\n", headers={"content-type": "text/yaml"})
        assert yaml.status_code == 422 and yaml.json()["detail"].endswith(
            "the body must be JSON (Content-Type: application/json), not text/yaml"
        )
