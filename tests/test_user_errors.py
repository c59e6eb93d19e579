"""What a user can get wrong at the keyboard (issue 13): each gets one line and the documented exit code
(2 bad input, 3 unknown id, 4 unreachable), or the API's 404/409/422, and nothing is written.

The CLI runs through its real entry point on a real SQLite store in XORJOBS_HOME; the API through
FastAPI's TestClient on a real SQLite file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.helpers import run_main, write_known_sweep
from xorjobs.api.main import create_app
from xorjobs.defaults import MAX_COST_POINTS_PER_JOB
from xorjobs.errors import IdempotencyKeyReused, InvalidSpec
from xorjobs.settings import Settings, get_settings
from xorjobs.spec import SweepSpec, validate_spec
from xorjobs.spec_tokens import parse_lrs, parse_seeds
from xorjobs.store.schema import ensure_schema, upgrade
from xorjobs.store.sweeps import create_sweep

Capsys = pytest.CaptureFixture[str]
MP = pytest.MonkeyPatch


def store_url() -> str:
    url = get_settings().resolved_database_url
    ensure_schema(url)
    return url


def one_line_error(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(home=tmp_path / "api-home")
    upgrade(settings.resolved_database_url)
    with TestClient(create_app(settings)) as test_client:
        yield test_client


SMALL = {"variants": ["nn"], "steps": 10}


# --- 1a: names are printed as written, control characters refused ---------------------------------


@pytest.mark.parametrize("name", ["[/]", "[bold red]boom[/]", "a [link=x]b"])
def test_a_name_that_looks_like_markup_prints_as_written_in_every_listing(
    name: str, monkeypatch: MP, capsys: Capsys
) -> None:
    url = store_url()
    sweep_id = create_sweep(url, validate_spec({**SMALL, "name": name})).sweep_id
    for args in (["sweeps"], ["status"], ["status", sweep_id]):
        code, out, err = run_main(args, monkeypatch, capsys)
        assert code == 0 and name in out and "MarkupError" not in err, (args, out, err)
    code, out, err = run_main(["delete", sweep_id, "--yes", "--cancel"], monkeypatch, capsys)
    assert code == 0 and f"({name})" in out, err


@pytest.mark.parametrize("character", ["\x1b", "\x07", "\n", "\r", "\x7f", "\x9b", "\u2028"])
def test_control_characters_in_a_name_are_refused_by_the_cli_and_the_api(
    character: str, monkeypatch: MP, capsys: Capsys, client: TestClient
) -> None:
    name = f"evil{character}[31mred"
    code, _, err = run_main(["submit", "--variant", "nn", "--name", name], monkeypatch, capsys)
    assert code == 2 and one_line_error(err).startswith("error: --name: contains the control character")
    assert not (get_settings().home / "xorjobs.db").exists()  # nothing written
    response = client.post("/sweeps", json={**SMALL, "name": name})
    assert response.status_code == 422 and response.json()["detail"].startswith("body.name:")


def test_a_stored_name_with_an_escape_sequence_is_shown_not_executed(monkeypatch: MP, capsys: Capsys) -> None:
    # A name stored before control characters were refused (model_construct skips the validation).
    url = store_url()
    spec = SweepSpec.model_construct(**{**validate_spec(SMALL).model_dump(), "name": "x\x1b]0;pwned\x07y"})
    create_sweep(url, spec)
    code, out, _ = run_main(["sweeps"], monkeypatch, capsys)
    assert code == 0 and "\x1b" not in out and "\x07" not in out and "x\\x1b]0;pwned\\x07y" in out


# --- 1b: idempotency keys and tokens -------------------------------------------------------------

BAD_KEYS = ["ключ-🔑", " spaced key ", "tab\tkey", "k" * 201, "line\nbreak"]


@pytest.mark.parametrize("key", BAD_KEYS)
@pytest.mark.parametrize("mode", ["embedded", "http"])
def test_a_key_that_cannot_travel_in_a_header_is_one_line_exit_2_in_both_modes(
    key: str, mode: str, monkeypatch: MP, capsys: Capsys
) -> None:
    if mode == "http":  # nothing listens there: the key is refused before any request (not exit 4)
        monkeypatch.setenv("XORJOBS_API_URL", "http://127.0.0.1:1")
    code, _, err = run_main(["submit", "--variant", "nn", "--key", key], monkeypatch, capsys)
    assert code == 2 and one_line_error(err).startswith("error: --key: ")


def test_keys_have_one_limit_in_both_modes(client: TestClient) -> None:
    assert client.post("/sweeps", json=SMALL, headers={"Idempotency-Key": "k" * 200}).status_code == 201
    too_long = client.post("/sweeps", json=SMALL, headers={"Idempotency-Key": "k" * 201})
    assert too_long.status_code == 422 and too_long.json()["detail"].startswith("Idempotency-Key: 201 char")
    # UTF-8 bytes from a raw client arrive as latin-1 text: not printable ASCII, refused, not stored.
    raw = client.post("/sweeps", json=SMALL, headers=[(b"Idempotency-Key", "ключ".encode())])
    assert raw.status_code == 422 and raw.json()["detail"].startswith("Idempotency-Key:")
    inner_space = client.post("/sweeps", json=SMALL, headers={"Idempotency-Key": "nightly run 3"})
    assert inner_space.status_code == 201


@pytest.mark.parametrize("token", ["tökén", "token\n", "two words"])
def test_a_token_that_cannot_travel_in_a_header_names_the_variable(
    token: str, monkeypatch: MP, capsys: Capsys
) -> None:
    monkeypatch.setenv("XORJOBS_API_URL", "http://127.0.0.1:1")
    monkeypatch.setenv("XORJOBS_API_TOKEN", token)
    code, _, err = run_main(["sweeps"], monkeypatch, capsys)
    line = one_line_error(err)
    assert code == 2 and line.startswith("error: XORJOBS_API_TOKEN: ") and token.strip() not in line


# --- 1c: a used key with a different spec -------------------------------------------------------


def test_a_used_key_with_a_different_spec_is_refused_in_the_store() -> None:
    url = store_url()
    first = create_sweep(url, validate_spec(SMALL), "key-1")
    assert create_sweep(url, validate_spec(SMALL), "key-1") == first.__class__(
        first.sweep_id, first.jobs, created=False
    )
    with pytest.raises(IdempotencyKeyReused, match=f"'key-1' was used for sweep {first.sweep_id}"):
        create_sweep(url, validate_spec({**SMALL, "steps": 11}), "key-1")


def test_a_used_key_with_a_different_spec_is_exit_2_and_json_says_created(
    monkeypatch: MP, capsys: Capsys
) -> None:
    args = ["submit", "--variant", "nn", "--steps", "10", "--key", "nightly-1", "--json"]
    code, out, _ = run_main(args, monkeypatch, capsys)
    assert code == 0 and json.loads(out)["created"] is True
    code, out, _ = run_main(args, monkeypatch, capsys)
    assert code == 0 and json.loads(out)["created"] is False
    code, out, err = run_main([*args[:4], "11", *args[5:]], monkeypatch, capsys)
    assert code == 2 and out == "" and "idempotency key 'nightly-1' was used for sweep" in one_line_error(err)


def test_the_api_answers_409_for_a_used_key_with_a_different_spec(client: TestClient) -> None:
    headers = {"Idempotency-Key": "api-key"}
    assert client.post("/sweeps", json=SMALL, headers=headers).status_code == 201
    assert client.post("/sweeps", json=SMALL, headers=headers).status_code == 200
    reused = client.post("/sweeps", json={**SMALL, "steps": 11}, headers=headers)
    assert reused.status_code == 409 and "'api-key' was used for sweep" in reused.json()["detail"]


# --- 2d: output paths and XORJOBS_HOME ------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["plot", "-o", "/nonexistent/dir/x.png"], "does not exist"),
        (["plot", "-o", "x.jpg"], "must end in .png"),
        (["plot", "-o", "x.svg"], "must end in .png"),
        (["plot", "-o", "."], "must end in .png"),
        (["plot", "-o", "folder.png"], "it is a folder"),
        (["export", "-o", "/nonexistent/dir/x.csv"], "does not exist"),
        (["export", "-o", "/proc/version"], "cannot write '/proc/version'"),
        (["export", "-o", "folder.png"], "it is a folder"),
    ],
)
def test_an_output_that_cannot_be_written_is_one_line_exit_2_and_writes_nothing(
    args: list[str], message: str, tmp_path: Path, monkeypatch: MP, capsys: Capsys
) -> None:
    write_known_sweep(store_url())
    (tmp_path / "folder.png").mkdir()
    before = sorted(os.listdir(tmp_path))
    code, _, err = run_main(args, monkeypatch, capsys)
    assert code == 2 and message in one_line_error(err) and "--output" in err
    assert sorted(os.listdir(tmp_path)) == before


def test_plot_writes_png_bytes_under_a_png_name(tmp_path: Path, monkeypatch: MP, capsys: Capsys) -> None:
    write_known_sweep(store_url())
    code, _, err = run_main(["plot", "-o", "curves.PNG"], monkeypatch, capsys)
    assert code == 0, err
    assert (tmp_path / "curves.PNG").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.glob("*.partial"))


@pytest.mark.parametrize("home", ["", "  ", "a-file"])
def test_a_bad_xorjobs_home_is_one_line_exit_2(
    home: str, tmp_path: Path, monkeypatch: MP, capsys: Capsys
) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    monkeypatch.setenv("XORJOBS_HOME", home)
    code, _, err = run_main(["sweeps"], monkeypatch, capsys)
    assert code == 2 and one_line_error(err).startswith("error: XORJOBS_HOME: ")
    assert not (tmp_path / "xorjobs.db").exists()


# --- 2e: retry with a job id, delete's question, the API's words, unknown query parameters ---------


def test_retry_with_a_job_id_is_unknown_like_every_other_swapped_id(
    monkeypatch: MP, capsys: Capsys, client: TestClient
) -> None:
    url = store_url()
    job_id = create_sweep(url, validate_spec(SMALL)).jobs[0].job_id
    code, _, err = run_main(["retry", job_id], monkeypatch, capsys)
    assert code == 3 and f"no sweep {job_id}" in one_line_error(err)
    api_job = client.post("/sweeps", json=SMALL).json()["jobs"][0]["id"]
    assert client.post(f"/sweeps/{api_job}/retry").status_code == 404


def test_delete_of_an_active_sweep_without_cancel_refuses_before_asking(
    monkeypatch: MP, capsys: Capsys
) -> None:
    sweep_id = create_sweep(store_url(), validate_spec(SMALL)).sweep_id
    code, out, err = run_main(["delete", sweep_id], monkeypatch, capsys)  # no --yes, no stdin
    assert code == 1 and "?" not in out and "[y/N]" not in out + err
    line = one_line_error(err)
    assert "--cancel" in line and f"xorjobs cancel {sweep_id}" in line and "cancel=true" not in line


def test_the_api_409_speaks_http_not_cli_flags(client: TestClient) -> None:
    sweep_id = client.post("/sweeps", json=SMALL).json()["sweep_id"]
    refused = client.delete(f"/sweeps/{sweep_id}")
    detail = refused.json()["detail"]
    assert refused.status_code == 409 and "?cancel=true" in detail and "--cancel" not in detail
    assert "xorjobs " not in detail


@pytest.mark.parametrize(
    ("method", "path", "parameter"),
    [
        ("POST", "/sweeps/{sweep}/retry?failed=true", "failed"),
        ("GET", "/sweeps?limt=5", "limt"),
        ("GET", "/sweeps/{sweep}?verbose=1", "verbose"),
        ("GET", "/sweeps/{sweep}/summary?by=variant&treshold=0.1", "treshold"),
        ("DELETE", "/sweeps/{sweep}?cancle=true", "cancle"),
        ("GET", "/jobs/{job}?x=1", "x"),
        ("GET", "/health?x=1", "x"),
    ],
)
def test_an_unknown_query_parameter_is_a_422_naming_it(
    method: str, path: str, parameter: str, client: TestClient
) -> None:
    created = client.post("/sweeps", json=SMALL).json()
    url = path.format(sweep=created["sweep_id"], job=created["jobs"][0]["id"])
    response = client.request(method, url)
    assert response.status_code == 422, response.text
    assert response.json()["detail"].startswith(f"query.{parameter}: unknown query parameter")
    # Nothing happened: the sweep is still there, queued.
    assert client.get(f"/sweeps/{created['sweep_id']}").json()["counts"]["queued"] == 1


def test_known_query_parameters_still_work(client: TestClient) -> None:
    created = client.post("/sweeps", json=SMALL).json()
    sweep_id = created["sweep_id"]
    assert client.post(f"/sweeps/{sweep_id}/retry?failed_only=true").status_code == 200
    assert client.get("/sweeps?limit=5").status_code == 200
    assert client.delete(f"/sweeps/{sweep_id}?cancel=true").status_code == 200


# --- 2f: learning rates in float32, one number rule --------------------------------------------------


@pytest.mark.parametrize(
    ("lrs", "field", "message"),
    [
        ([1e-320], "lrs.0", "rounds to 0 in float32"),
        ([1.0, 1e-46], "lrs.1", "rounds to 0 in float32"),
        ([0.1, 0.10000000001], "lrs", "same learning rate in float32"),
    ],
)
def test_learning_rates_are_checked_as_float32(lrs: list[float], field: str, message: str) -> None:
    with pytest.raises(InvalidSpec, match=message) as raised:
        validate_spec({"lrs": lrs})
    assert raised.value.field == field


@pytest.mark.parametrize(
    ("flags", "flag"),
    [
        (["--lr", "1e-320"], "--lr"),
        (["--lr", "0.1,0.10000000001"], "--lr"),
        (["--lr", "1_0"], "--lr"),
        (["--lr", "١"], "--lr"),
        (["--lr", "0.5,,1"], "--lr"),
        (["--seed", "1_000"], "--seed"),
        (["--seed", "٣"], "--seed"),
        (["--seed", "1,,2"], "--seed"),
        (["--seed", "1,"], "--seed"),
        (["--variant", "backprop,,wide_deep"], "--variant"),
        (["--steps", "1_000"], "--steps"),
        (["--steps", "٣"], "--steps"),
        (["--log-every", "1_0"], "--log-every"),
    ],
)
def test_one_number_rule_for_every_flag(flags: list[str], flag: str, monkeypatch: MP, capsys: Capsys) -> None:
    code, _, err = run_main(["submit", "--variant", "nn", *flags], monkeypatch, capsys)
    assert code == 2 and one_line_error(err).startswith(f"error: {flag}: ")


def test_the_number_rule_still_takes_ordinary_numbers() -> None:
    assert parse_lrs(["0.5,1e-3", ".25", "2.", "+1E2"]) == [0.5, 1e-3, 0.25, 2.0, 100.0]
    assert parse_seeds([" 7 , 8-9"]) == [7, 8, 9]


# --- 2g: stored cost points are capped ------------------------------------------------------------


def test_too_many_cost_points_per_job_or_per_sweep_are_refused_naming_log_every(
    monkeypatch: MP, capsys: Capsys
) -> None:
    code, _, err = run_main(["submit", "--steps", "1000000", "--log-every", "1"], monkeypatch, capsys)
    line = one_line_error(err)
    assert (
        code == 2 and line.startswith("error: --log-every: ") and f"at most {MAX_COST_POINTS_PER_JOB}" in line
    )
    args = ["submit", "--seed", "0-9999", "--variant", "nn", "--steps", "10001", "--log-every", "10"]
    code, _, err = run_main(args, monkeypatch, capsys)
    assert code == 2 and "a sweep stores at most" in one_line_error(err)
    # The seed's own interval on the largest sweep stays allowed.
    assert validate_spec({"variants": ["nn"], "seeds": list(range(10_000))}).job_count == 10_000
    assert validate_spec({"steps": MAX_COST_POINTS_PER_JOB, "log_every": 1}).log_every == 1


# --- 2h: prune gives the space back -----------------------------------------------------------------


def test_prune_shrinks_the_sqlite_file(monkeypatch: MP, capsys: Capsys) -> None:
    url = store_url()
    path = Path(url.removeprefix("sqlite:///"))
    spec = validate_spec({"variants": ["nn"], "seeds": list(range(3000)), "steps": 10})
    for _ in range(3):
        sweep = create_sweep(url, spec)
        run_main(["cancel", sweep.sweep_id], monkeypatch, capsys)
    full = path.stat().st_size
    code, _, err = run_main(["prune", "--older-than", "0s", "--yes"], monkeypatch, capsys)
    assert code == 0, err
    assert path.stat().st_size < full / 4, (full, path.stat().st_size)


# --- 2i: a large submit prints a summary ------------------------------------------------------------


def test_a_large_submit_prints_a_summary_not_every_row(monkeypatch: MP, capsys: Capsys) -> None:
    code, out, _ = run_main(["submit", "--seed", "1-500", "--steps", "10"], monkeypatch, capsys)
    assert code == 0
    assert "with 1500 job(s)" in out and "first 10 of 1500 jobs (nn 500, wide_deep 500, backprop 500)" in out
    assert out.count("job-") == 10 and "xorjobs status sw-" in out


# --- 2j: help and usage errors ------------------------------------------------------------------------

COMMANDS = ["submit", "run", "sweeps", "status", "results", "plot", "export", "delete", "prune", "retry"]


@pytest.mark.parametrize("command", COMMANDS)
def test_help_uses_click_style_types_and_no_flag_takes_a_value(
    command: str, monkeypatch: MP, capsys: Capsys
) -> None:
    code, out, _ = run_main([command, "--help"], monkeypatch, capsys)
    assert code == 0 and "<str>" not in out and "<bool>" not in out and "<list" not in out


def test_a_usage_error_is_one_error_line_like_every_other_error(monkeypatch: MP, capsys: Capsys) -> None:
    code, _, err = run_main(["submit", "--bogus"], monkeypatch, capsys)
    assert code == 2 and one_line_error(err) == "error: No such option: --bogus (see `xorjobs submit --help`)"
