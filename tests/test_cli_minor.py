"""The CLI's minor breaks found by trying it as a new user (issue 13 §2), each run through the real entry
point on a real SQLite store in XORJOBS_HOME (or a real process where a terminal or a signal matters)."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from tests.helpers import run_main, write_known_sweep
from tests.services import XORJOBS, clean_env, wait_until
from xorjobs.cli import render
from xorjobs.settings import get_settings
from xorjobs.spec import validate_spec
from xorjobs.store import control, queries
from xorjobs.store.claims import claim_job
from xorjobs.store.costs import record_costs
from xorjobs.store.results import Outcome, finish_job
from xorjobs.store.schema import ensure_schema
from xorjobs.store.sweeps import create_sweep
from xorjobs.store.workers import WorkerIdentity, register_worker
from xorjobs.sweep_progress import eta_seconds

Capsys = pytest.CaptureFixture[str]
MP = pytest.MonkeyPatch


def one_line_error(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


# --- `xorjobs api` on a port another process holds: a service that cannot start, exit 4 ------------


def test_api_on_a_busy_port_is_exit_4_in_one_line_naming_the_port(monkeypatch: MP, capsys: Capsys) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        code, _, err = run_main(["api", "--port", str(port)], monkeypatch, capsys)
    assert code == 4, err
    assert one_line_error(err) == (
        f"error: --port: 127.0.0.1:{port} is in use by another process; choose another port with --port"
    )


def test_api_on_a_host_that_is_not_this_machine_is_exit_2_naming_the_host(
    monkeypatch: MP, capsys: Capsys
) -> None:
    code, _, err = run_main(["api", "--host", "nosuchhost.invalid"], monkeypatch, capsys)
    assert code == 2 and one_line_error(err).startswith("error: --host: 'nosuchhost.invalid' is not a name")


# --- a broker URL kombu cannot use is bad input, not "the broker publishes later" -------------------


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis:/127.0.0.1", "cannot be parsed as a URL"),
        (" redis://127.0.0.1:6379/0", "cannot be parsed as a URL"),
        ("redis://127.0.0.1:6379/0\n", "cannot be parsed as a URL"),
        ("redis://127.0.0.1:6379/jobs", "the database after the host must be a number"),
        ("redis://127.0.0.1:6379/0/1", "the database after the host must be a number"),
    ],
)
def test_a_malformed_broker_url_is_exit_2_naming_the_variable_and_nothing_is_submitted(
    url: str, message: str, monkeypatch: MP, capsys: Capsys
) -> None:
    monkeypatch.setenv("XORJOBS_BROKER_URL", url)
    code, out, err = run_main(["submit", "--variant", "nn", "--steps", "10"], monkeypatch, capsys)
    assert code == 2 and one_line_error(err).startswith(f"error: XORJOBS_BROKER_URL: {message}"), err
    assert "submitted" not in out and not (Path(os.environ["XORJOBS_HOME"]) / "xorjobs.db").exists()


# --- results --csv has both costs ----------------------------------------------------------------------


def test_results_csv_has_the_last_logged_cost_beside_the_final_cost(monkeypatch: MP, capsys: Capsys) -> None:
    url = get_settings().resolved_database_url
    sweep_id = write_known_sweep(url)
    code, out, _ = run_main(["results", sweep_id, "--csv"], monkeypatch, capsys)
    rows = list(csv.DictReader(io.StringIO(out)))
    assert code == 0 and rows and "last_logged_cost" in rows[0] and "steps" in rows[0], out
    _, out, _ = run_main(["results", sweep_id, "--json"], monkeypatch, capsys)
    jobs = json.loads(out)["jobs"]
    for row, job in zip(rows, jobs, strict=True):
        expected = job["last_logged_cost"]
        assert row["last_logged_cost"] == ("" if expected is None else str(expected)), (row, job)
        assert row["steps"] == str(job["steps"]) and row["log_every"] == str(job["log_every"])


# --- submit --wait: ends with run's summary line; Ctrl-C says the sweep goes on -------------------------


def _latest_sweep(url: str) -> str | None:
    try:
        return queries.latest_sweep_id(url)
    except Exception:  # no store or no sweep yet
        return None


def test_submit_wait_ends_with_the_summary_line_run_prints(monkeypatch: MP, capsys: Capsys) -> None:
    url = get_settings().resolved_database_url

    def cancel_once_submitted() -> None:  # no worker here: the sweep ends by being cancelled
        control.cancel(url, wait_until(lambda: _latest_sweep(url), 30, "the sweep"))

    canceller = threading.Thread(target=cancel_once_submitted)
    canceller.start()
    code, out, err = run_main(["submit", "--variant", "nn", "--steps", "10", "--wait"], monkeypatch, capsys)
    canceller.join()
    assert code == 1, err  # the command worked, a job was cancelled
    assert out.strip().splitlines()[-1] == "cancelled 1", out


def test_ctrl_c_during_submit_wait_says_the_sweep_goes_on_and_how_to_watch_it(tmp_path: Path) -> None:
    env = clean_env(XORJOBS_HOME=str(tmp_path / "home"))
    url = f"sqlite:///{tmp_path / 'home' / 'xorjobs.db'}"
    process = subprocess.Popen(
        [XORJOBS, "submit", "--variant", "nn", "--steps", "10", "--wait"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    sweep_id = wait_until(lambda: _latest_sweep(url), 60, "the sweep")
    time.sleep(1)  # in the wait by now (nothing trains it: no worker)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=30)
    assert process.returncode == 130, err
    assert "Traceback" not in err
    said = f"interrupted: stopped waiting; sweep {sweep_id} goes on (queued 1): "
    how = f"`xorjobs status --watch {sweep_id}` watches it, `xorjobs cancel {sweep_id}` stops it"
    assert said + how in err, err


# --- every table fits 80 columns: ids and numbers whole, one line per row ------------------------------


def _finished_sweep(url: str) -> tuple[str, list[dict[str, Any]]]:
    """12 succeeded jobs with the widest names and numbers the tables see: wide_deep, lr 0.001, a
    six-digit seed, tiny and NaN costs, a long sweep name."""
    ensure_schema(url)
    spec = validate_spec(
        {
            "variants": ["wide_deep", "nn", "backprop"],
            "seeds": [1, 123456],
            "lrs": [0.001, 1.0],
            "steps": 10,
            "name": "a fairly long sweep name, as people write them",
        }
    )
    sweep = create_sweep(url, spec)
    for index, job in enumerate(sweep.jobs):
        claim = claim_job(url, job.job_id, "cpu-1@host", 60, 3)
        assert claim is not None
        cost = [0.000123456789, math.nan, 0.693147180][index % 3]
        outcome = Outcome([(0, 0.7)], cost, [0.1, 0.9, 0.9, 0.1], [0, 1, 1, 0], 1.0, "cpu", "x", "x")
        finish_job(url, job.job_id, claim.attempt, outcome)
    return sweep.sweep_id, queries.sweep_status(url, sweep.sweep_id)["jobs"]


@pytest.mark.parametrize(
    "args",
    [["status"], ["results"], ["results", "--by", "variant,lr"], ["results", "--by", "variant,lr,seed"]],
)
def test_the_tables_fit_80_columns_with_every_id_and_row_whole(
    args: list[str], monkeypatch: MP, capsys: Capsys
) -> None:
    url = get_settings().resolved_database_url
    sweep_id, jobs = _finished_sweep(url)
    buffer = io.StringIO()
    monkeypatch.setattr(render, "stdout", Console(file=buffer, width=80, highlight=False))
    code, _, err = run_main(args, monkeypatch, capsys)
    lines = buffer.getvalue().splitlines()
    assert code == 0 and lines and max(len(line) for line in lines) <= 80, (err, "\n".join(lines))
    if "--by" not in args:
        for job in jobs:  # each job on one line, its id, variant and state whole
            (line,) = [line for line in lines if job["id"] in line]
            assert job["variant"] in line.split() and "succeeded" in line.split(), line
        return
    groups = [line for line in lines if line.split() and line.split()[0] in ("wide_deep", "nn", "backprop")]
    assert len(groups) == (6 if args[-1] == "variant,lr" else 12), "\n".join(lines)
    assert all("0.001" in line.split() or "1" in line.split() for line in groups), "\n".join(lines)
    assert sweep_id in buffer.getvalue()


def test_sweeps_and_workers_fit_80_columns(monkeypatch: MP, capsys: Capsys) -> None:
    url = get_settings().resolved_database_url
    sweep_id, _ = _finished_sweep(url)
    engines = {"nn": "native", "wide_deep": "native", "backprop": "exact"}
    identity = WorkerIdentity(
        "a" * 32, "cpu-123456@worker-host-01", "worker-host-01", 123456, None, ("cpu",), engines, "x", 5.0
    )
    register_worker(url, identity)
    for args in (["sweeps"], ["workers"]):
        buffer = io.StringIO()
        monkeypatch.setattr(render, "stdout", Console(file=buffer, width=80, highlight=False))
        code, _, err = run_main(args, monkeypatch, capsys)
        lines = buffer.getvalue().splitlines()
        assert code == 0 and max(len(line) for line in lines) <= 80, (err, "\n".join(lines))
        row = next(line for line in lines if sweep_id in line or "cpu-123456@worker-host-01" in line)
        assert "succeeded 12" in row or "live" in row.split(), "\n".join(lines)


# --- progress: moves with a pack's logged steps, full state names, one ETA for run and status --watch ---


def test_a_running_pack_moves_the_sweeps_progress_with_its_logged_steps(database_url: str) -> None:
    ensure_schema(database_url)
    spec = validate_spec({"variants": ["nn"], "seeds": [1, 2, 3], "steps": 1000, "log_every": 100})
    first, second, third = create_sweep(database_url, spec).jobs
    claims = [claim_job(database_url, job.job_id, "cpu-1@host", 60, 3) for job in (first, second, third)]
    assert all(claims)
    a, b, c = (claim for claim in claims if claim is not None)
    record_costs(database_url, a.job_id, a.attempt, [(step, 0.7) for step in range(0, 500, 100)], 60)  # 400
    record_costs(database_url, b.job_id, b.attempt, [(0, 0.7), (100, 0.7), (200, 0.7)], 60)  # step 200
    outcome = Outcome([(0, 0.7)], 0.6, [0.1, 0.9, 0.9, 0.1], [0, 1, 1, 0], 1.0, "cpu", "x", "x")
    finish_job(database_url, c.job_id, c.attempt, outcome)
    status = queries.sweep_status(database_url, str(queries.job_detail(database_url, a.job_id)["sweep_id"]))
    assert status["counts"]["running"] == 2 and status["counts"]["succeeded"] == 1
    assert status["progress"] == pytest.approx(1 + 0.4 + 0.2)
    assert status["elapsed_seconds"] is not None and 0 <= status["elapsed_seconds"] < 60


def _status(progress: float, elapsed: float | None, **counts: int) -> dict[str, Any]:
    every = {"queued": 0, "running": 0, "succeeded": 0, "failed": 0, "cancelled": 0, **counts}
    return {
        "sweep_id": "sw-0123456789ab",
        "counts": every,
        "jobs": [],
        "progress": progress,
        "elapsed_seconds": elapsed,
    }


def test_the_eta_is_one_rule_elapsed_times_left_over_done() -> None:
    assert eta_seconds(_status(1.6, 8.0, succeeded=1, running=2)) == pytest.approx(7.0)
    assert eta_seconds(_status(0.0, 3.0, running=3)) is None  # nothing done yet: no pace to go by
    assert eta_seconds(_status(3.0, 9.0, succeeded=3)) is None  # done
    assert eta_seconds(_status(0.5, None, queued=3)) is None


def test_run_and_status_watch_show_the_same_progress_and_eta_in_whole_state_names(
    monkeypatch: MP,
) -> None:
    from xorjobs.cli import waiting
    from xorjobs.cli.watch import watch_status

    moving, done = _status(1.6, 8.0, succeeded=1, running=2), _status(3.0, 12.0, succeeded=3)
    shown = []
    for show in ("run", "status --watch"):
        console = Console(file=io.StringIO(), width=80, force_terminal=True, record=True, highlight=False)
        fetch = iter([moving, done]).__next__
        if show == "run":
            monkeypatch.setattr(waiting, "stderr", console)
            waiting.wait_for_sweep(fetch, interval=0)
        else:
            watch_status(fetch, console, lambda _: render.new_table(""), interval=0)
        shown.append(console.export_text())
    for text in shown:
        assert "sweep sw-0123456789ab: running 2, succeeded 1" in text, text
        assert "1/3 jobs 0:00:08 elapsed, ETA 0:00:07" in text, text
        assert "queu=" not in text and "runn=" not in text
        assert "3/3 jobs 0:00:12 elapsed, ETA -:--:--" in text, text


def test_the_python_clients_bar_says_what_the_cli_says() -> None:
    """Client.wait(progress=True)'s bar: the same jobs, elapsed time, ETA and counts (xorjobs.sweep_progress);
    it had rich's own elapsed time and no ETA, and moved with finished jobs only."""
    from xorjobs.client.progress import poll_until_done

    console = Console(file=io.StringIO(), width=120, force_terminal=True, record=True, highlight=False)
    fetch = iter([_status(1.6, 8.0, succeeded=1, running=2), _status(3.0, 12.0, succeeded=3)]).__next__
    final = poll_until_done(fetch, progress=True, interval=0, console=console)
    text = console.export_text()
    assert final["counts"]["succeeded"] == 3
    assert "1/3 jobs 0:00:08 elapsed, ETA 0:00:07 running 2, succeeded 1" in text, text
    assert "3/3 jobs 0:00:12 elapsed, ETA -:--:-- succeeded 3" in text, text


# --- --help in click's words for every command; usage errors in the one error style ----------------------


def _every_command() -> list[list[str]]:
    import typer.main

    from xorjobs.cli.app import app

    root = typer.main.get_command(app)
    commands: list[list[str]] = []
    for name, command in getattr(root, "commands", {}).items():
        children = getattr(command, "commands", None)
        commands += [[name, child] for child in children] if children else [[name]]
    return commands


def test_every_commands_help_names_its_values_and_arguments_as_click_does(
    monkeypatch: MP, capsys: Capsys
) -> None:
    commands = _every_command()
    assert ["api"] in commands and ["db", "upgrade"] in commands and len(commands) >= 18
    for command in commands:
        code, out, _ = run_main([*command, "--help"], monkeypatch, capsys)
        assert code == 0 and not re.search(r"<[a-z_\[\] ]+>|\{[a-z_]+\}", out), (command, out)
        assert "CPU|GPU" not in out and "INT RANGE" not in out, (command, out)
    _, out, _ = run_main(["show", "--help"], monkeypatch, capsys)
    assert "Usage: xorjobs show [OPTIONS] JOB_ID" in out
    _, out, _ = run_main(["worker", "--help"], monkeypatch, capsys)
    assert "cpu|gpu" in out
    _, out, _ = run_main(["results", "--help"], monkeypatch, capsys)
    assert re.search(r"--threshold\s+COST", out) and re.search(r"--by\s+FIELDS", out), out


def test_every_commands_help_text_is_reflowed_to_the_terminal(monkeypatch: MP, capsys: Capsys) -> None:
    """A command's description wraps at the terminal's width, not where its docstring's source lines end:
    typer 0.29 kept those line breaks, so `verify --help` at 100 columns had "differing" alone on a line.
    Every line of a paragraph but its last is filled to near the width."""
    monkeypatch.setenv("COLUMNS", "100")
    for command in _every_command():
        code, out, _ = run_main([*command, "--help"], monkeypatch, capsys)
        description = out.split("Usage:", 1)[1].split("╭", 1)[0].splitlines()[1:]
        paragraphs = "\n".join(line.strip() for line in description).strip().split("\n\n")
        for paragraph in paragraphs:
            lines = paragraph.splitlines()
            short = [line for line in lines[:-1] if len(line) < 70]
            assert code == 0 and not short, (command, short, out)


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["api", "--port", "0"], "error: --port: Input should be greater than or equal to 1"),
        (["worker", "--queue", "tpu"], "error: --queue: 'tpu' is not one of 'cpu', 'gpu'"),
        (["sweeps", "--limit", "0"], "error: --limit: Input should be greater than or equal to 1"),
        (["submit", "--lr"], "error: --lr: requires an argument"),
        (["submit", "--wait=yes"], "error: --wait: does not take a value"),
        (["show"], "error: JOB_ID: is missing (see `xorjobs show --help`)"),
        (["submit", "--bogus"], "error: No such option: --bogus (see `xorjobs submit --help`)"),
    ],
)
def test_usage_errors_are_one_line_naming_the_flag_like_every_other_error(
    args: list[str], line: str, monkeypatch: MP, capsys: Capsys
) -> None:
    code, _, err = run_main(args, monkeypatch, capsys)
    assert code == 2 and one_line_error(err) == line


# --- a large submit: the table is capped, --json lists every job ---------------------------------------


def test_a_large_submit_caps_its_table_and_json_lists_every_job(monkeypatch: MP, capsys: Capsys) -> None:
    args = ["submit", "--variant", "nn", "--seed", "1-30", "--steps", "10"]
    code, out, _ = run_main(args, monkeypatch, capsys)
    assert code == 0 and out.count("job-") == 10 and "list them all: xorjobs status sw-" in out, out
    code, out, _ = run_main([*args, "--name", "again", "--json"], monkeypatch, capsys)
    assert code == 0 and len(json.loads(out)["jobs"]) == 30


def test_compare_fits_80_columns_with_a_and_b_on_their_own_lines(monkeypatch: MP, capsys: Capsys) -> None:
    url = get_settings().resolved_database_url
    sweep_a, _ = _finished_sweep(url)
    sweep_b, _ = _finished_sweep(url)
    buffer = io.StringIO()
    monkeypatch.setattr(render, "stdout", Console(file=buffer, width=80, highlight=False))
    code, _, err = run_main(["compare", sweep_a, sweep_b, "--by", "variant,lr"], monkeypatch, capsys)
    lines = buffer.getvalue().splitlines()
    assert code == 0 and max(len(line) for line in lines) <= 80, (err, "\n".join(lines))
    rows = [
        line.split() for line in lines if line.split() and line.split()[0] in ("wide_deep", "nn", "backprop")
    ]
    assert len(rows) == 6 and all(row[2] == "A" for row in rows), "\n".join(lines)
    assert sum(1 for line in lines if line.split()[:1] == ["B"]) == 6, "\n".join(lines)
