"""What a sweep found (issue 5): grouped statistics checked against hand-computed values, the Wilson
interval against published values, the CLI and API shapes, compare, and the streamed export.

The sweep under test is written straight into a real store with the worker's own lifecycle functions
(claim, record costs, finish or fail), so every outcome is known in advance: see ``KNOWN_SWEEP``.
"""

from __future__ import annotations

import csv
import io
import json
import math
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event

from tests.helpers import TOKEN, run_main, write_known_sweep
from xorjobs import analysis
from xorjobs.api.main import create_app
from xorjobs.client.http import HttpBackend
from xorjobs.errors import InvalidSpec
from xorjobs.export_formats import ExportFormat
from xorjobs.service import Service
from xorjobs.settings import Settings
from xorjobs.spec import SweepSpec
from xorjobs.store import queries
from xorjobs.store.costs import write_costs
from xorjobs.store.engine import get_engine, write_session
from xorjobs.store.export import export_text
from xorjobs.store.floats import json_safe
from xorjobs.store.schema import ensure_schema, upgrade
from xorjobs.store.sweeps import create_sweep


def group(summary: dict[str, object], **key: object) -> dict[str, object]:
    groups = summary["groups"]
    assert isinstance(groups, list)
    matches = [item for item in groups if all(item[name] == value for name, value in key.items())]
    assert len(matches) == 1, f"{key}: {matches}"
    found: dict[str, object] = matches[0]
    return found


# --- the Wilson interval ---------------------------------------------------------------------------

# Newcombe (1998), "Two-sided confidence intervals for the single proportion", Table I, method 3
# (Wilson score, no continuity correction), to the 4 decimals published.
NEWCOMBE_WILSON = [
    (81, 263, 0.2553, 0.3662),
    (15, 148, 0.0624, 0.1605),
    (0, 20, 0.0, 0.1611),
    (1, 29, 0.0061, 0.1718),
    (29, 29, 0.8830, 1.0),
    (0, 1, 0.0, 0.7935),
    (1, 1, 0.2065, 1.0),
]


@pytest.mark.parametrize(("successes", "trials", "low", "high"), NEWCOMBE_WILSON)
def test_the_wilson_interval_matches_newcombes_published_values(
    successes: int, trials: int, low: float, high: float
) -> None:
    computed = analysis.wilson_interval(successes, trials)
    assert computed == pytest.approx((low, high), abs=5e-5)


def test_the_wilson_interval_is_exactly_0_or_1_at_the_extremes_and_needs_a_trial() -> None:
    for trials in (1, 3, 7, 10, 1000):
        assert analysis.wilson_interval(0, trials)[0] == 0.0
        assert analysis.wilson_interval(trials, trials)[1] == 1.0
    with pytest.raises(ValueError):
        analysis.wilson_interval(0, 0)
    with pytest.raises(ValueError):
        analysis.wilson_interval(4, 3)


# --- the grouped statistics, by hand ---------------------------------------------------------------


def test_the_summary_by_variant_and_lr_matches_hand_computed_numbers(database_url: str) -> None:
    sweep_id = write_known_sweep(database_url)
    summary = Service(Settings(database_url=database_url)).summary(sweep_id, ["variant", "lr"])
    assert summary["sweep_id"] == sweep_id and summary["by"] == ["variant", "lr"]
    assert summary["threshold"] == 0.05
    assert [(g["variant"], g["lr"]) for g in summary["groups"]] == [
        ("nn", 1.0), ("nn", 0.5), ("backprop", 1.0), ("backprop", 0.5),
    ]  # fmt: skip

    # nn, lr 1: two solved (final 0.01 and 0.03, under 0.05 at steps 100 and 200), one diverged (NaN).
    nn_1 = group(summary, variant="nn", lr=1.0)
    assert nn_1["jobs"] == 3 and nn_1["succeeded"] == 3 and nn_1["failed"] == 0 and nn_1["solved"] == 2
    assert nn_1["solve_rate"] == pytest.approx(2 / 3)
    assert nn_1["solve_rate_ci"] == pytest.approx([0.2077, 0.9385], abs=5e-5)
    assert nn_1["final_cost_mean"] == pytest.approx(0.02)
    assert nn_1["final_cost_std"] == pytest.approx(math.sqrt(2 * 0.01**2))  # sample std of 0.01, 0.03
    assert nn_1["final_cost_median"] == pytest.approx(0.02)
    assert nn_1["converged"] == 2 and nn_1["steps_to_converge_median"] == 150
    assert nn_1["diverged"] == 1

    # nn, lr 0.5: one succeeded unsolved (0.75), one failed, one still queued.
    nn_half = group(summary, variant="nn", lr=0.5)
    assert (nn_half["jobs"], nn_half["succeeded"], nn_half["failed"], nn_half["unfinished"]) == (3, 1, 1, 1)
    assert nn_half["solved"] == 0 and nn_half["solve_rate"] == 0.0
    assert nn_half["solve_rate_ci"] == pytest.approx([0.0, 0.7935], abs=5e-5)
    assert nn_half["final_cost_mean"] == pytest.approx(0.5) and nn_half["final_cost_std"] is None
    assert nn_half["final_cost_median"] == pytest.approx(0.5)
    assert nn_half["converged"] == 0 and nn_half["steps_to_converge_median"] is None
    assert nn_half["diverged"] == 0

    # backprop, lr 1: all solved; finals 0.001, 0.002, 0.006; under 0.05 at steps 100, 100, 200.
    bp_1 = group(summary, variant="backprop", lr=1.0)
    assert bp_1["solved"] == 3 and bp_1["solve_rate"] == 1.0
    assert bp_1["solve_rate_ci"] == pytest.approx([0.4385, 1.0], abs=5e-5)
    assert bp_1["final_cost_mean"] == pytest.approx(0.003)
    assert bp_1["final_cost_std"] == pytest.approx(math.sqrt((0.002**2 + 0.001**2 + 0.003**2) / 2))
    assert bp_1["final_cost_median"] == pytest.approx(0.002)
    assert bp_1["converged"] == 3 and bp_1["steps_to_converge_median"] == 100
    assert bp_1["diverged"] == 0

    # backprop, lr 0.5: one cancelled; one hit inf and came back to 0.2 (diverged, its finite final
    # cost still counts); one solved, under 0.05 at step 100 (0.049).
    bp_half = group(summary, variant="backprop", lr=0.5)
    assert (bp_half["jobs"], bp_half["succeeded"], bp_half["cancelled"]) == (3, 2, 1)
    assert bp_half["solved"] == 1 and bp_half["solve_rate"] == 0.5
    assert bp_half["solve_rate_ci"] == pytest.approx([0.0945, 0.9055], abs=5e-5)
    assert bp_half["final_cost_mean"] == pytest.approx(0.12)
    assert bp_half["final_cost_std"] == pytest.approx(math.sqrt(2 * 0.08**2))
    assert bp_half["converged"] == 1 and bp_half["steps_to_converge_median"] == 100
    assert bp_half["diverged"] == 1


def test_the_threshold_decides_steps_to_converge(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    sweep_id = write_known_sweep(url)
    service = Service(Settings(database_url=url))
    tight = service.summary(sweep_id, ["variant", "lr"], threshold=0.035)
    # nn lr 1: 0.04 at step 100 is no longer under it, so both solved jobs converge at step 200.
    assert group(tight, variant="nn", lr=1.0)["steps_to_converge_median"] == 200
    loose = service.summary(sweep_id, ["variant", "lr"], threshold=0.9)
    # Every succeeded job is under 0.9 from step 0 on (the diverged nn job too: its step 0 is 0.7).
    assert group(loose, variant="nn", lr=1.0)["converged"] == 3
    assert group(loose, variant="nn", lr=1.0)["steps_to_converge_median"] == 0


def test_without_by_one_group_holds_every_job_and_by_seed_keeps_the_sweeps_order(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    sweep_id = write_known_sweep(url)
    service = Service(Settings(database_url=url))
    everything = service.summary(sweep_id, [])
    assert len(everything["groups"]) == 1
    assert everything["groups"][0]["jobs"] == 12 and everything["groups"][0]["solved"] == 6
    by_seed = service.summary(sweep_id, ["seed"])
    assert [g["seed"] for g in by_seed["groups"]] == [1, 2, 3]
    assert [g["jobs"] for g in by_seed["groups"]] == [4, 4, 4]


@pytest.mark.parametrize(
    ("text", "problem"), [("bogus", "unknown field"), ("variant,variant", "twice"), (",", "")]
)
def test_an_unknown_or_repeated_by_field_is_refused_naming_the_field(text: str, problem: str) -> None:
    with pytest.raises(InvalidSpec) as raised:
        analysis.parse_by(text, "--by")
    assert raised.value.field == "--by" and problem in raised.value.message


# --- the CLI and the API ---------------------------------------------------------------------------


@pytest.fixture
def known_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, str]]:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    sweep_id = write_known_sweep(url)
    monkeypatch.setenv("XORJOBS_DATABASE_URL", url)
    yield url, sweep_id


def test_results_by_prints_json_csv_and_a_table_that_names_the_threshold(
    known_store: tuple[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url, sweep_id = known_store
    code, out, _ = run_main(["results", sweep_id, "--by", "variant,lr", "--json"], monkeypatch, capsys)
    assert code == 0
    printed = json.loads(out)
    assert set(printed) == {"sweep_id", "by", "threshold", "groups"}
    assert printed == json.loads(
        json.dumps(Service(Settings(database_url=url)).summary(sweep_id, ["variant", "lr"]))
    )

    code, out, _ = run_main(["results", sweep_id, "--by", "variant", "--csv"], monkeypatch, capsys)
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [row["variant"] for row in rows] == ["nn", "backprop"]
    assert rows[1]["solved"] == "4" and rows[1]["solve_rate"] == str(4 / 5)
    assert float(rows[1]["solve_rate_ci_low"]) == pytest.approx(analysis.wilson_interval(4, 5)[0])

    code, out, _ = run_main(["results", sweep_id, "--by", "lr", "--threshold", "0.035"], monkeypatch, capsys)
    assert code == 0 and "median steps to cost < 0.035" in out and "[95% CI]" in out


def test_results_without_by_keeps_the_per_job_shape(
    known_store: tuple[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _, sweep_id = known_store
    code, out, _ = run_main(["results", sweep_id, "--json"], monkeypatch, capsys)
    printed = json.loads(out)
    assert code == 0 and set(printed) == {"sweep_id", "jobs"} and len(printed["jobs"]) == 12
    diverged = next(
        job for job in printed["jobs"] if job["variant"] == "nn" and job["seed"] == 3 and job["lr"] == 1.0
    )
    assert diverged["final_cost"] == "nan" and diverged["costs"][1] == [100, "nan"]


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["--by", "colour"], "--by"),
        (["--by", "variant", "--threshold", "-1"], "--threshold"),
        (["--by", "variant", "--threshold", "nan"], "--threshold"),
        (["--threshold", "0.1"], "--threshold"),
    ],
)
def test_bad_results_flags_exit_2_with_one_line_naming_the_flag(
    known_store: tuple[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    flag: str,
) -> None:
    code, out, err = run_main(["results", known_store[1], *args], monkeypatch, capsys)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and flag in err


@pytest.fixture
def api_client(known_store: tuple[str, str]) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(database_url=known_store[0], api_token=TOKEN))) as client:
        yield client


def test_the_api_and_the_in_process_backend_return_identical_summaries(
    known_store: tuple[str, str], api_client: TestClient
) -> None:
    url, sweep_id = known_store
    over_http = HttpBackend("http://testserver", TOKEN, client=api_client)
    in_process = Service(Settings(database_url=url))
    for by, threshold in ((["variant", "lr"], 0.05), (["seed"], 0.035), ([], 0.05)):
        expected = json.loads(json.dumps(json_safe(in_process.summary(sweep_id, by, threshold))))
        assert over_http.summary(sweep_id, by, threshold) == expected
    response = api_client.get(f"/sweeps/{sweep_id}/summary?by=variant,lr&threshold=0.05", headers=auth())
    assert response.status_code == 200 and len(response.json()["groups"]) == 4


def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}"}


@pytest.mark.parametrize(
    ("query", "status", "field"),
    [("by=colour", 422, "by"), ("threshold=0", 422, "threshold"), ("threshold=nan", 422, "threshold")],
)
def test_the_summary_route_refuses_bad_parameters_naming_them(
    known_store: tuple[str, str], api_client: TestClient, query: str, status: int, field: str
) -> None:
    response = api_client.get(f"/sweeps/{known_store[1]}/summary?{query}", headers=auth())
    assert response.status_code == status and field in response.json()["detail"]
    assert api_client.get("/sweeps/sw-nope/summary", headers=auth()).status_code == 404


# --- compare ---------------------------------------------------------------------------------------


def test_compare_lines_up_the_groups_of_two_sweeps(
    known_store: tuple[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url, sweep_a = known_store
    # Sweep B: only lr 1.0 and 0.25 (0.25 has no group in A); its jobs stay queued. Same steps and log
    # interval as A: compare refuses sweeps that differ in those (tests/test_compare_comparable.py).
    spec_b = SweepSpec(variants=["nn"], seeds=[1], lrs=[1.0, 0.25], steps=201, log_every=100)
    sweep_b = create_sweep(url, spec_b).sweep_id
    code, out, _ = run_main(
        ["compare", sweep_a, sweep_b, "--by", "variant,lr", "--json"], monkeypatch, capsys
    )
    assert code == 0
    comparison = json.loads(out)
    assert (comparison["sweep_a"], comparison["sweep_b"], comparison["by"]) == (
        sweep_a,
        sweep_b,
        ["variant", "lr"],
    )
    keys = [(row["variant"], row["lr"]) for row in comparison["groups"]]
    assert keys == [("nn", 1.0), ("nn", 0.5), ("backprop", 1.0), ("backprop", 0.5), ("nn", 0.25)]
    first = comparison["groups"][0]
    assert first["a"]["solved"] == 2 and first["b"]["jobs"] == 1 and first["b"]["unfinished"] == 1
    assert comparison["groups"][1]["b"] is None and comparison["groups"][4]["a"] is None
    code, out, _ = run_main(["compare", sweep_a, sweep_b], monkeypatch, capsys)
    assert code == 0 and "solve rate [95% CI] A" in out and sweep_b in out


# --- export ----------------------------------------------------------------------------------------


def test_export_writes_every_cost_with_the_job_fields_and_non_finite_words(
    known_store: tuple[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    url, sweep_id = known_store
    target = tmp_path / "costs.csv"
    code, _, _ = run_main(["export", sweep_id, "--format", "csv", "-o", str(target)], monkeypatch, capsys)
    assert code == 0
    rows = list(csv.DictReader(target.open()))
    assert list(rows[0]) == ["job_id", "variant", "seed", "lr", "device", "step", "cost"]
    stored = queries.costs_by_job(url, sweep_id)
    assert len(rows) == sum(len(costs) for costs in stored.values()) == 28
    by_key = {(row["variant"], row["seed"], row["lr"], row["step"]): row["cost"] for row in rows}
    assert by_key[("nn", "3", "1.0", "100")] == "nan" and by_key[("backprop", "2", "0.5", "100")] == "inf"
    assert by_key[("backprop", "3", "0.5", "100")] == "0.049"
    code, out, _ = run_main(["export", sweep_id, "--format", "jsonl"], monkeypatch, capsys)
    lines = [json.loads(line) for line in out.splitlines()]
    assert len(lines) == 28 and set(lines[0]) == {"job_id", "variant", "seed", "lr", "device", "step", "cost"}
    code, _, err = run_main(["export", "sw-nope", "-o", str(tmp_path / "none.csv")], monkeypatch, capsys)
    assert code == 3 and "no sweep sw-nope" in err and not (tmp_path / "none.csv").exists()


def test_the_api_streams_the_same_export_as_the_cli(
    known_store: tuple[str, str], api_client: TestClient
) -> None:
    url, sweep_id = known_store
    response = api_client.get(f"/sweeps/{sweep_id}/costs.csv", headers=auth())
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    assert response.text == "".join(export_text(url, sweep_id, ExportFormat.CSV))
    over_http = HttpBackend("http://testserver", TOKEN, client=api_client)
    assert "".join(over_http.export_costs(sweep_id, ExportFormat.JSONL)) == "".join(
        export_text(url, sweep_id, ExportFormat.JSONL)
    )
    assert api_client.get("/sweeps/sw-nope/costs.csv", headers=auth()).status_code == 404


def test_exporting_a_10000_job_sweep_is_one_streamed_query(database_url: str) -> None:
    ensure_schema(database_url)
    spec = SweepSpec(variants=["nn"], seeds=list(range(10_000)), lrs=[1.0], steps=400, log_every=100)
    sweep = create_sweep(database_url, spec)
    steps = (0, 100, 200, 300)
    with write_session(database_url) as session:
        write_costs(
            session, [(job.job_id, 1, [(step, 0.5 / (1 + step)) for step in steps]) for job in sweep.jobs]
        )
    statements: list[str] = []

    def count(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        statements.append(statement)

    engine = get_engine(database_url)
    event.listen(engine, "before_cursor_execute", count)
    try:
        lines = sum(
            chunk.count("\n") for chunk in export_text(database_url, sweep.sweep_id, ExportFormat.CSV)
        )
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert lines == 1 + 10_000 * len(steps)
    selects = [statement for statement in statements if statement.lstrip().upper().startswith("SELECT")]
    assert len(selects) == 2, selects  # does the sweep exist; then every cost, in one query


def test_the_api_never_imports_matplotlib_until_it_draws(tmp_path: Path) -> None:
    upgrade(Settings(home=tmp_path).resolved_database_url)
    code = (
        "import sys; from fastapi.testclient import TestClient; from xorjobs.api.main import create_app; "
        "from xorjobs.settings import Settings; "
        f"c = TestClient(create_app(Settings(home={str(tmp_path)!r}))); "
        "s = c.post('/sweeps', json={'variants': ['nn'], 'steps': 5}).json()['sweep_id']; "
        "assert c.get(f'/sweeps/{s}/summary?by=variant').status_code == 200; "
        "assert 'matplotlib' not in sys.modules, 'matplotlib was imported'; "
        "assert c.get(f'/sweeps/{s}/plot.png').status_code == 200; "
        "assert 'matplotlib' in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
