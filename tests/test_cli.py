"""The CLI as a user meets it: bad input, unknown ids, unreachable API, and the in-process commands."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.services import XORJOBS, clean_env
from xorjobs.cli import main
from xorjobs.settings import get_settings

BAD_FLAGS = [
    (["--variant", "mlp"], "--variant"),
    (["--variant", "nn,nn"], "--variant"),
    (["--seed", "-1"], "--seed"),
    (["--seed", "5-1"], "--seed"),
    (["--seed", "1.5"], "--seed"),
    (["--seed", "99999999999999999999"], "--seed"),
    (["--seed", "0-99999999"], "--seed"),
    (["--seed", "3,3"], "--seed"),
    (["--lr", "nan"], "--lr"),
    (["--lr", "inf"], "--lr"),
    (["--lr", "1e309"], "--lr"),
    (["--lr", "0"], "--lr"),
    (["--lr", "-1"], "--lr"),
    (["--lr", "2000"], "--lr"),
    (["--lr", "true"], "--lr"),
    (["--lr", "0.1,0.1"], "--lr"),
    (["--steps", "0"], "--steps"),
    (["--steps", "1000000000000"], "--steps"),
    (["--steps", "ten"], "--steps"),
    (["--log-every", "0"], "--log-every"),
    (["--steps", "10", "--log-every", "20"], "--log-every"),
    (["--device", "tpu"], "--device"),
    (["--seed", "0-5000", "--lr", "0.1,0.2,0.3"], "sweep"),
    (["--variant", "nn'; DROP TABLE jobs;--"], "--variant"),
]


def run_cli(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [XORJOBS, *args],
        cwd=cwd,
        env=clean_env(**env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def invoke_main(
    args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> subprocess.CompletedProcess[str]:
    """Run the real entry point in this process (much faster than a subprocess per case)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("XORJOBS_HOME", raising=False)
    monkeypatch.setattr(sys, "argv", ["xorjobs", *args])
    get_settings.cache_clear()
    with pytest.raises(SystemExit) as exited:
        main()
    captured = capsys.readouterr()
    return subprocess.CompletedProcess(args, int(exited.value.code or 0), captured.out, captured.err)


@pytest.mark.parametrize("command", ["submit", "run"])
@pytest.mark.parametrize(("flags", "field"), BAD_FLAGS)
def test_bad_input_exits_2_with_one_line_naming_the_field_and_writes_nothing(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    command: str,
    flags: list[str],
    field: str,
) -> None:
    result = invoke_main([command, *flags], tmp_path, monkeypatch, capsys)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and field in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    assert not (tmp_path / ".xorjobs").exists()  # nothing written, not even an empty store


def test_bad_input_through_the_real_executable_exits_2(tmp_path: Path) -> None:
    result = run_cli(["submit", "--lr", "nan"], tmp_path)
    assert result.returncode == 2 and result.stderr.strip() == "error: --lr: 'nan' is not a finite number"
    assert not (tmp_path / ".xorjobs").exists()


def test_unknown_sweep_exits_3(tmp_path: Path) -> None:
    assert run_cli(["db", "upgrade"], tmp_path).returncode == 0  # a store, so the id is what is unknown
    result = run_cli(["status", "sw-nope"], tmp_path)
    assert result.returncode == 3 and "no sweep sw-nope" in result.stderr


def test_status_without_any_sweep_says_how_to_start(tmp_path: Path) -> None:
    result = run_cli(["status"], tmp_path)
    assert result.returncode == 3 and "xorjobs submit" in result.stderr


def test_unreachable_api_exits_4_without_a_traceback(tmp_path: Path) -> None:
    result = run_cli(["sweeps"], tmp_path, XORJOBS_API_URL="http://127.0.0.1:9")
    assert result.returncode == 4 and "cannot reach the API" in result.stderr
    assert "Traceback" not in result.stderr


def test_version_and_help(tmp_path: Path) -> None:
    assert run_cli(["--version"], tmp_path).stdout.startswith("xorjobs ")
    help_text = run_cli(["submit", "--help"], tmp_path).stdout
    assert "--seed" in help_text and "range" in help_text


def test_in_process_submit_then_status_json_has_every_state(tmp_path: Path) -> None:
    submitted = run_cli(
        ["submit", "--variant", "nn,backprop", "--seed", "1-2", "--lr", "0.5", "--steps", "20", "--json"],
        tmp_path,
    )
    assert submitted.returncode == 0, submitted.stderr
    body = json.loads(submitted.stdout)
    assert [(j["variant"], j["seed"]) for j in body["jobs"]] == [
        ("nn", 1),
        ("nn", 2),
        ("backprop", 1),
        ("backprop", 2),
    ]
    assert {"id", "variant", "seed", "lr", "steps", "log_every", "device", "queue", "state"} <= set(
        body["jobs"][0]
    )
    assert "no live worker serves queue 'cpu'" in submitted.stderr
    status = json.loads(run_cli(["status", "--json"], tmp_path).stdout)
    assert status["sweep_id"] == body["sweep_id"]
    assert status["counts"] == {"queued": 4, "running": 0, "succeeded": 0, "failed": 0, "cancelled": 0}
    listed = json.loads(run_cli(["sweeps", "--json"], tmp_path).stdout)
    assert listed["sweeps"][0]["size"] == 4
    cancelled = run_cli(["cancel", body["sweep_id"]], tmp_path)
    assert "cancelled 4 job(s)" in cancelled.stdout
    results = json.loads(run_cli(["results", "--json"], tmp_path).stdout)
    assert {job["state"] for job in results["jobs"]} == {"cancelled"}
    assert all(job["final_cost"] is None and job["costs"] == [] for job in results["jobs"])
