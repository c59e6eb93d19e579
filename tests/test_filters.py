"""Filters (issue 12, section 4): ``status``, ``results``, ``export`` and their routes keep the jobs that
match ``--state``, ``--variant``, ``--lr``, ``--seed``; ``results --sort KEY --limit N``; ``sweeps --name
--state``. One model (``xorjobs.filters``) for the CLI and the API, checked on SQLite and Postgres.

Every expected answer is computed here in Python from the unfiltered records, so the SQL is checked
against an independent reading of the same rules, not against itself.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.helpers import TOKEN, Json, run_main, write_known_sweep
from xorjobs.api.main import create_app
from xorjobs.client.http import HttpBackend
from xorjobs.errors import InvalidSpec
from xorjobs.export_formats import ExportFormat
from xorjobs.filters import (
    JobFilter,
    JobOrder,
    cli_flag,
    job_query_parameters,
    parse_job_filter,
    parse_job_order,
    parse_sweep_filter,
    query_parameter,
    seed_ranges,
)
from xorjobs.service import Service
from xorjobs.settings import Settings
from xorjobs.spec import SweepSpec
from xorjobs.store import queries
from xorjobs.store.claims import claim_job
from xorjobs.store.export import export_text
from xorjobs.store.floats import json_safe
from xorjobs.store.results import Outcome, finish_job
from xorjobs.store.schema import ensure_schema
from xorjobs.store.sweeps import create_sweep

# --- parsing: the sweep flags' list rules, one validation ----------------------------------------------


def test_filter_text_follows_the_sweep_flags_list_rules() -> None:
    parsed = parse_job_filter(
        states=["succeeded,failed", "failed"],
        variants=["nn"],
        lrs=["0.5,1", "1e-3"],
        seeds=["1-3,7", "4"],
        name=cli_flag,
    )
    assert parsed.states == ("succeeded", "failed")
    assert parsed.variants == ("nn",)
    assert parsed.lrs == (0.5, 1.0, 0.001)
    assert parsed.seed_ranges == ((1, 4), (7, 7))
    assert seed_ranges([9, 1, 2, 3, 5]) == ((1, 3), (5, 5), (9, 9))
    assert parse_job_filter(name=cli_flag).is_empty


def test_query_parameters_parse_back_to_the_same_filter() -> None:
    original = parse_job_filter(
        states=["running"],
        variants=["wide_deep", "nn"],
        lrs=["0.1", "3"],
        seeds=["5", "10-20"],
        name=cli_flag,
    )
    order = JobOrder(sort="final_cost", descending=True, limit=7)
    parameters = job_query_parameters(original, order)
    again = parse_job_filter(
        states=[parameters["state"]],
        variants=[parameters["variant"]],
        lrs=[parameters["lr"]],
        seeds=[parameters["seed"]],
        name=query_parameter,
    )
    assert again == original
    assert (parameters["sort"], parameters["desc"], parameters["limit"]) == ("final_cost", True, 7)


BAD_FILTERS: list[tuple[dict[str, Any], str]] = [
    ({"states": ["done"]}, "state"),
    ({"states": ["succeeded,"]}, "state"),
    ({"variants": ["cnn"]}, "variant"),
    ({"lrs": ["0"]}, "lr"),
    ({"lrs": ["1001"]}, "lr"),
    ({"lrs": ["nan"]}, "lr"),
    ({"lrs": ["1_0"]}, "lr"),
    ({"seeds": ["-1"]}, "seed"),
    ({"seeds": ["1.5"]}, "seed"),
    ({"seeds": ["5-1"]}, "seed"),
    ({"seeds": ["٣"]}, "seed"),
    ({"seeds": [",".join(str(2 * n) for n in range(101))]}, "seed"),  # 101 ranges: too many parameters
]


@pytest.mark.parametrize(("fields", "field"), BAD_FILTERS, ids=lambda value: str(value)[:30])
def test_a_bad_filter_names_its_flag_or_query_parameter(fields: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidSpec) as cli_error:
        parse_job_filter(**fields, name=cli_flag)
    assert cli_error.value.field == f"--{field}"
    with pytest.raises(InvalidSpec) as api_error:
        parse_job_filter(**fields, name=query_parameter)
    assert api_error.value.field == f"query.{field}"


def test_a_bad_order_or_sweep_filter_names_its_flag() -> None:
    for sort, limit, field in (("colour", None, "--sort"), (None, 0, "--limit"), (None, 10_001, "--limit")):
        with pytest.raises(InvalidSpec) as error:
            parse_job_order(sort=sort, descending=False, limit=limit, name=cli_flag)
        assert error.value.field == field
    for name_part, states, field in (
        ("a\x00b", None, "--name"),
        ("", None, "--name"),
        (None, ["x"], "--state"),
    ):
        with pytest.raises(InvalidSpec) as error:
            parse_sweep_filter(name_part=name_part, states=states, name=cli_flag)
        assert error.value.field == field


# --- the store, on SQLite and Postgres -----------------------------------------------------------------


def keeps(job: Json, job_filter: JobFilter) -> bool:
    """The filter's rule, read independently of the SQL."""
    return (
        (not job_filter.states or job["state"] in job_filter.states)
        and (not job_filter.variants or job["variant"] in job_filter.variants)
        and (not job_filter.lrs or job["lr"] in job_filter.lrs)
        and (
            not job_filter.seed_ranges
            or any(low <= job["seed"] <= high for low, high in job_filter.seed_ranges)
        )
    )


def sorted_ids(jobs: list[Json], order: JobOrder) -> list[str]:
    """The order's rule, read independently of the SQL: missing values and NaN last, then job order."""
    if order.sort is None:
        chosen = jobs
    else:
        key = order.sort
        sign = -1 if order.descending else 1

        def rank(job: Json) -> tuple[int, float]:
            value = job[key]
            if value is None:
                return (2, 0.0)
            number = float(value)
            return (1, 0.0) if math.isnan(number) else (0, sign * number)

        chosen = sorted(jobs, key=rank)  # stable: ties keep the expansion order
    ids = [job["id"] for job in chosen]
    return ids[: order.limit] if order.limit is not None else ids


JOB_FILTERS = [
    {"states": ["succeeded"]},
    {"states": ["failed,cancelled", "queued"]},
    {"variants": ["nn"], "lrs": ["1"]},
    {"seeds": ["1-2"], "variants": ["backprop"]},
    {"seeds": ["3"], "lrs": ["0.5"], "states": ["succeeded"]},
    {"lrs": ["0.25"]},  # matches nothing
]
ORDERS = [
    JobOrder(),
    JobOrder(sort="final_cost"),
    JobOrder(sort="final_cost", descending=True, limit=4),
    JobOrder(sort="accuracy", descending=True),
    JobOrder(sort="seed", descending=True, limit=5),
    JobOrder(sort="lr"),
]


def test_the_store_keeps_and_orders_the_jobs_as_the_rules_say(database_url: str) -> None:
    sweep_id = write_known_sweep(database_url)
    every = queries.sweep_status(database_url, sweep_id)["jobs"]
    assert len(every) == 12
    for fields in JOB_FILTERS:
        job_filter = parse_job_filter(**fields, name=cli_flag)
        for order in ORDERS:
            status = queries.sweep_status(database_url, sweep_id, job_filter, order)
            expected = sorted_ids([job for job in every if keeps(job, job_filter)], order)
            assert [job["id"] for job in status["jobs"]] == expected, (fields, order)
            assert status["counts"] == queries.sweep_status(database_url, sweep_id)["counts"]  # the sweep's
        results = queries.sweep_results(database_url, sweep_id, job_filter, JobOrder(limit=3))
        everything = {job["id"]: job for job in queries.sweep_results(database_url, sweep_id)["jobs"]}
        # Costs included (NaN among them: compared as the JSON every output writes, where NaN is "nan").
        assert all(json_safe(job) == json_safe(everything[job["id"]]) for job in results["jobs"])


def test_sort_by_final_cost_puts_minus_inf_first_then_numbers_then_inf_then_nan_then_no_result(
    database_url: str,
) -> None:
    ensure_schema(database_url)
    spec = SweepSpec(variants=["nn"], seeds=[1, 2, 3, 4, 5, 6], lrs=[1.0], steps=10)
    sweep = create_sweep(database_url, spec)
    finals = [math.inf, 0.3, math.nan, -math.inf, 0.1]  # seed 6 stays queued: no final cost
    for job, final in zip(sweep.jobs, finals, strict=False):
        claim = claim_job(database_url, job.job_id, "test-worker", lease_seconds=60, max_attempts=3)
        assert claim is not None
        outcome = Outcome(
            unwritten_costs=[(0, 0.7)],
            final_cost=final,
            hypothesis=[0.1, 0.9, 0.9, 0.1],
            predicted=[0.0, 1.0, 1.0, 0.0],
            accuracy=1.0,
            device_name="cpu",
            cpu_capability="test",
            torch_version="test",
        )
        finish_job(database_url, job.job_id, claim.attempt, outcome)

    def seeds(order: JobOrder) -> list[int]:
        jobs = queries.sweep_status(database_url, sweep.sweep_id, JobFilter(), order)["jobs"]
        return [job["seed"] for job in jobs]

    assert seeds(JobOrder(sort="final_cost")) == [4, 5, 2, 1, 3, 6]
    assert seeds(JobOrder(sort="final_cost", descending=True)) == [1, 2, 5, 4, 3, 6]
    assert seeds(JobOrder(sort="final_cost", limit=2)) == [4, 5]


def test_export_keeps_the_costs_of_the_kept_jobs_only(database_url: str) -> None:
    sweep_id = write_known_sweep(database_url)
    every = queries.sweep_results(database_url, sweep_id)["jobs"]
    job_filter = parse_job_filter(variants=["backprop"], lrs=["1.0"], seeds=["2-3"], name=cli_flag)
    rows = list(
        csv.DictReader(
            io.StringIO("".join(export_text(database_url, sweep_id, ExportFormat.CSV, job_filter)))
        )
    )
    kept = [job for job in every if keeps(job, job_filter)]
    assert len(kept) == 2
    assert [(row["job_id"], int(row["step"])) for row in rows] == [
        (job["id"], step) for job in kept for step, _ in job["costs"]
    ]
    lines = "".join(
        export_text(
            database_url, sweep_id, ExportFormat.JSONL, parse_job_filter(states=["queued"], name=cli_flag)
        )
    )
    assert lines == ""  # the queued job logged nothing


def test_sweeps_filter_by_a_name_part_in_any_case_and_by_a_job_state(database_url: str) -> None:
    ensure_schema(database_url)
    names = ["Alpha lr sweep", "beta_100%", "beta", None]
    created = [
        create_sweep(database_url, SweepSpec(variants=["nn"], seeds=[index], steps=10, name=name)).sweep_id
        for index, name in enumerate(names)
    ]
    claim = claim_job(
        database_url, queries.sweep_status(database_url, created[2])["jobs"][0]["id"], "w", 60, 3
    )
    assert claim is not None  # sweep "beta" now has a running job

    def listed(name_part: str | None, states: list[str] | None = None) -> set[str]:
        sweep_filter = parse_sweep_filter(name_part=name_part, states=states, name=cli_flag)
        return {sweep["sweep_id"] for sweep in queries.list_sweeps(database_url, 100, sweep_filter)}

    assert listed("ALPHA") == {created[0]}
    assert listed("beta") == {created[1], created[2]}
    assert listed("_100%") == {created[1]}  # % and _ are plain characters, not wildcards
    assert listed("a%1") == set() and listed("%") == {created[1]}  # a wildcard would match
    assert listed(None, ["running"]) == {created[2]}
    assert listed(None, ["queued"]) == {created[0], created[1], created[3]}
    assert listed("beta", ["queued", "failed"]) == {created[1]}


# --- the CLI and the API, one model ----------------------------------------------------------------------


@pytest.fixture
def known_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, str]]:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    sweep_id = write_known_sweep(url)
    monkeypatch.setenv("XORJOBS_DATABASE_URL", url)
    yield url, sweep_id


@pytest.fixture
def api_client(known_store: tuple[str, str]) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(database_url=known_store[0], api_token=TOKEN))) as client:
        yield client


def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}"}


def test_results_sort_final_cost_limit_gives_the_best_jobs(
    known_store: tuple[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url, sweep_id = known_store
    code, out, _ = run_main(
        ["results", sweep_id, "--state", "succeeded", "--sort", "final_cost", "--limit", "3", "--json"],
        monkeypatch,
        capsys,
    )
    assert code == 0
    best = json.loads(out)["jobs"]
    succeeded = [job for job in queries.sweep_status(url, sweep_id)["jobs"] if job["state"] == "succeeded"]
    finite = sorted(float(job["final_cost"]) for job in succeeded if not math.isnan(float(job["final_cost"])))
    assert [job["final_cost"] for job in best] == finite[:3]
    code, out, _ = run_main(["status", sweep_id, "--variant", "nn", "--lr", "0.5"], monkeypatch, capsys)
    assert code == 0 and "(3 of 12 jobs shown)" in out
    code, out, _ = run_main(["export", sweep_id, "--seed", "1", "--variant", "nn"], monkeypatch, capsys)
    assert code == 0 and {row["seed"] for row in csv.DictReader(io.StringIO(out))} == {"1"}
    code, out, _ = run_main(["sweeps", "--state", "running", "--json"], monkeypatch, capsys)
    assert code == 0 and json.loads(out)["sweeps"] == []


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["results", "--state", "done"], "--state"),
        (["results", "--lr", "0"], "--lr"),
        (["status", "--seed", "x"], "--seed"),
        (["results", "--sort", "colour"], "--sort"),
        (["results", "--limit", "0"], "--limit"),
        (["results", "--limit", "ten"], "--limit"),
        (["results", "--by", "lr", "--sort", "seed"], "--sort"),
        (["export", "--variant", "cnn"], "--variant"),
        (["sweeps", "--state", "done"], "--state"),
    ],
)
def test_a_bad_filter_flag_exits_2_with_one_line_naming_it(
    known_store: tuple[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    flag: str,
) -> None:
    code, out, err = run_main(args, monkeypatch, capsys)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and flag in err


def test_the_api_answers_what_the_in_process_service_answers_for_every_filter(
    known_store: tuple[str, str], api_client: TestClient
) -> None:
    url, sweep_id = known_store
    over_http = HttpBackend("http://testserver", TOKEN, client=api_client)
    in_process = Service(Settings(database_url=url))

    def same(http_answer: Json, in_process_answer: Json) -> None:
        # A running sweep's elapsed time is read off the database clock at each call: the in-process
        # answer, asked second, is the same or later; every other field is equal.
        http_elapsed = http_answer.pop("elapsed_seconds", None)
        in_process_elapsed = in_process_answer.pop("elapsed_seconds", None)
        assert (http_elapsed is None) == (in_process_elapsed is None)
        if http_elapsed is not None:
            assert http_elapsed <= in_process_elapsed
        assert http_answer == json.loads(json.dumps(json_safe(in_process_answer)))

    for fields in JOB_FILTERS:
        job_filter = parse_job_filter(**fields, name=cli_flag)
        for order in ORDERS:
            same(
                over_http.status(sweep_id, job_filter, order), in_process.status(sweep_id, job_filter, order)
            )
            same(
                over_http.results(sweep_id, job_filter, order),
                in_process.results(sweep_id, job_filter, order),
            )
        same(
            over_http.summary(sweep_id, ["lr"], 0.05, job_filter),
            in_process.summary(sweep_id, ["lr"], 0.05, job_filter),
        )
        assert "".join(over_http.export_costs(sweep_id, ExportFormat.CSV, job_filter)) == "".join(
            in_process.export_costs(sweep_id, ExportFormat.CSV, job_filter)
        )
    sweep_filter = parse_sweep_filter(name_part="nothing like it", states=None, name=cli_flag)
    assert over_http.sweeps(10, sweep_filter) == {"sweeps": []}


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("state=done", "query.state"),
        ("variant=nn,cnn", "query.variant"),
        ("lr=-1", "query.lr"),
        ("seed=1-", "query.seed"),
        ("sort=colour", "query.sort"),
        ("limit=0", "query.limit"),
    ],
)
def test_the_routes_refuse_a_bad_filter_with_422_naming_it(
    known_store: tuple[str, str], api_client: TestClient, query: str, field: str
) -> None:
    sweep_id = known_store[1]
    paths = [f"/sweeps/{sweep_id}", f"/sweeps/{sweep_id}/results"]
    if not query.startswith(("sort", "limit")):
        paths += [
            f"/sweeps/{sweep_id}/costs.csv",
            f"/sweeps/{sweep_id}/costs.jsonl",
            f"/sweeps/{sweep_id}/summary",
        ]
    for path in paths:
        response = api_client.get(f"{path}?{query}", headers=auth())
        assert response.status_code == 422 and field in response.json()["detail"], (path, response.text)
    response = api_client.get("/sweeps?name=a%00b", headers=auth())
    assert response.status_code == 422 and "query.name" in response.json()["detail"]
