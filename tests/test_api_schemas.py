"""The API documents what it returns (issue 10, section 4): every route's responses have a model in
/openapi.json, the bodies the API sends match those models, and a diverged job's NaN and infinite
numbers still travel as "nan"/"inf"/"-inf" through FastAPI's response validation.

A real SQLite store and the real app (TestClient); the diverged job's outcome is written into the
store directly, so its numbers are known in advance.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any, get_args

import pytest
from fastapi.testclient import TestClient
from pydantic import BaseModel, ValidationError
from sqlalchemy import update

from xorjobs.analysis import GROUP_FIELDS
from xorjobs.api import schemas
from xorjobs.api.main import create_app
from xorjobs.service import Service
from xorjobs.settings import Settings
from xorjobs.store.costs import write_costs
from xorjobs.store.engine import write_session
from xorjobs.store.floats import encode_float, json_safe
from xorjobs.store.schema import upgrade
from xorjobs.store.tables import Job, JobState

TOKEN = "schema-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
NAN, INF = math.nan, math.inf

DIVERGED_COSTS = [(0, 0.69), (100, INF), (200, NAN)]
SOLVED_COSTS = [(0, 0.69), (100, 0.3), (200, 0.01)]


@pytest.fixture
def app_settings(tmp_path: Path) -> Settings:
    settings = Settings(home=tmp_path / "home", api_token=TOKEN)
    upgrade(settings.resolved_database_url)  # the API never migrates: `xorjobs db upgrade` comes first
    return settings


@pytest.fixture
def client(app_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(app_settings)) as test_client:
        yield test_client


def _finish(url: str, job_id: str, costs: list[tuple[int, float]], hypothesis: list[float]) -> None:
    """Write a succeeded job's outcome as the worker would: costs, final cost, hypothesis, accuracy."""
    final_value, final_kind = encode_float(costs[-1][1])
    predicted = [1.0 if value > 0.5 else 0.0 for value in hypothesis]
    with write_session(url) as session:
        write_costs(session, [(job_id, 1, costs)])
        session.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(
                state=JobState.SUCCEEDED,
                attempt=1,
                started_at=Job.created_at,
                finished_at=Job.created_at,
                final_cost=final_value,
                final_cost_kind=final_kind,
                hypothesis_json=json.dumps(json_safe(hypothesis)),
                predicted_json=json.dumps(predicted),
                accuracy=sum(p == y for p, y in zip(predicted, [0, 1, 1, 0], strict=True)) / 4,
            )
        )


@pytest.fixture
def diverged_sweep(client: TestClient, app_settings: Settings) -> tuple[str, str, str]:
    """A finished sweep of two jobs: one diverged (costs inf then NaN, NaN output), one solved."""
    created = client.post(
        "/sweeps", json={"variants": ["backprop", "nn"], "steps": 201, "log_every": 100}, headers=AUTH
    )
    assert created.status_code == 201
    sweep_id = created.json()["sweep_id"]
    diverged, solved = (job["id"] for job in created.json()["jobs"])
    url = app_settings.resolved_database_url
    _finish(url, diverged, DIVERGED_COSTS, [NAN, NAN, NAN, NAN])
    _finish(url, solved, SOLVED_COSTS, [0.01, 0.98, 0.99, 0.02])
    return sweep_id, diverged, solved


def test_a_diverged_job_is_served_with_nan_and_inf_words_matching_its_models(
    client: TestClient, diverged_sweep: tuple[str, str, str]
) -> None:
    sweep_id, diverged, _ = diverged_sweep
    job = client.get(f"/jobs/{diverged}", headers=AUTH)
    assert job.status_code == 200, job.text
    assert job.json()["final_cost"] == "nan" and job.json()["hypothesis"] == ["nan"] * 4
    costs = client.get(f"/jobs/{diverged}/costs", headers=AUTH).json()["costs"]
    assert costs == [[0, 0.69], [100, "inf"], [200, "nan"]]
    results = client.get(f"/sweeps/{sweep_id}/results", headers=AUTH).json()
    assert results["jobs"][0]["costs"] == costs and results["jobs"][0]["final_cost"] == "nan"
    summary = client.get(f"/sweeps/{sweep_id}/summary?by=variant", headers=AUTH).json()
    assert [(group["variant"], group["diverged"]) for group in summary["groups"]] == [
        ("backprop", 1),
        ("nn", 0),
    ]
    documented: list[tuple[Any, type[BaseModel]]] = [
        (job.json(), schemas.Job),
        (results, schemas.SweepResults),
        (summary, schemas.Summary),
    ]
    for body, model in documented:
        model.model_validate(body)


def test_every_body_is_the_service_dict_unchanged_and_matches_its_model(
    client: TestClient, app_settings: Settings, diverged_sweep: tuple[str, str, str]
) -> None:
    """The models document the shapes; they change none (no key dropped, added, or nulled)."""
    sweep_id, diverged, _ = diverged_sweep
    service = Service(app_settings)  # what the CLI's in-process mode prints
    cases: list[tuple[str, str, Any, type[BaseModel]]] = [
        ("GET", "/sweeps", service.sweeps(100), schemas.SweepList),
        ("GET", f"/sweeps/{sweep_id}", service.status(sweep_id), schemas.SweepStatus),
        ("GET", f"/sweeps/{sweep_id}/results", service.results(sweep_id), schemas.SweepResults),
        ("GET", f"/jobs/{diverged}", service.job(diverged), schemas.Job),
        ("GET", f"/jobs/{diverged}/costs", service.costs(diverged), schemas.JobCosts),
        ("GET", f"/sweeps/{sweep_id}/summary", service.summary(sweep_id, []), schemas.Summary),
        (
            "GET",
            f"/sweeps/{sweep_id}/summary?by=lr,variant",
            service.summary(sweep_id, ["lr", "variant"]),
            schemas.Summary,
        ),
        ("POST", "/sweeps/prune?older_than_seconds=0&dry_run=true", service.prune(0, True), schemas.Pruned),
        ("POST", f"/sweeps/{sweep_id}/cancel", {"cancelled": []}, schemas.Cancelled),
        ("POST", f"/sweeps/{sweep_id}/retry?failed_only=true", {"retried": []}, schemas.Retried),
    ]
    for method, path, expected, model in cases:
        response = client.request(method, path, headers=AUTH)
        assert response.status_code == 200, f"{method} {path}: {response.text[:300]}"
        assert response.json() == json_safe(expected), path
        model.model_validate(response.json())
    deleted = client.delete(f"/sweeps/{sweep_id}", headers=AUTH)
    assert deleted.status_code == 200
    assert [sweep.sweep_id for sweep in schemas.Deleted.model_validate(deleted.json()).deleted] == [sweep_id]


def test_error_bodies_match_the_documented_error_models(client: TestClient, app_settings: Settings) -> None:
    queued = client.post("/sweeps", json={"variants": ["nn"], "steps": 5}, headers=AUTH).json()["sweep_id"]
    errors: list[tuple[str, str, dict[str, Any], int, type[BaseModel]]] = [
        ("GET", "/sweeps/sw-nope", {}, 404, schemas.ErrorDetail),
        ("GET", "/jobs/job-nope/costs", {}, 404, schemas.ErrorDetail),
        ("GET", "/sweeps", {"headers": {"Authorization": "Bearer wrong"}}, 401, schemas.ErrorDetail),
        ("DELETE", f"/sweeps/{queued}", {}, 409, schemas.ErrorDetail),
        ("POST", "/sweeps", {"json": {"lrs": [-1], "steps": 0}}, 422, schemas.ValidationErrorBody),
        ("GET", "/sweeps?limit=0", {}, 422, schemas.ValidationErrorBody),
        ("GET", f"/sweeps/{queued}/summary?by=colour", {}, 422, schemas.ValidationErrorBody),
        ("POST", "/sweeps", {"content": b"\x80", "headers": {"content-type": "application/json"}}, 422,
         schemas.ValidationErrorBody),
        ("POST", "/sweeps", {"content": b" " * (2 << 20), "headers": {"content-type": "application/json"}},
         413, schemas.ErrorDetail),
    ]  # fmt: skip
    documented = client.get("/openapi.json", headers=AUTH).json()["paths"]
    for method, path, arguments, status, model in errors:
        headers = {**AUTH, **arguments.pop("headers", {})}
        response = client.request(method, path, headers=headers, **arguments)
        assert response.status_code == status, (
            f"{method} {path}: {response.status_code} {response.text[:200]}"
        )
        body = model.model_validate(response.json())
        template = path.split("?")[0].replace(queued, "{sweep_id}").replace("sw-nope", "{sweep_id}")
        template = template.replace("job-nope", "{job_id}")
        assert str(status) in documented[template][method.lower()]["responses"], f"{method} {path} {status}"
        if status == 422 and "json" in arguments:
            assert isinstance(body, schemas.ValidationErrorBody) and body.errors
            assert {error.field for error in body.errors} == {"body.lrs.0", "body.steps"}


def test_openapi_documents_a_model_for_every_json_response(client: TestClient) -> None:
    document = client.get("/openapi.json", headers=AUTH).json()
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                for media_type, content in response.get("content", {}).items():
                    assert content.get("schema"), f"{method.upper()} {path} {status} {media_type}: no schema"
            if path != "/health":
                assert {"401", "422"} <= set(operation["responses"]), f"{method.upper()} {path}"
    final_cost = document["components"]["schemas"]["Job"]["properties"]["final_cost"]
    assert {"type": "string", "enum": ["nan", "inf", "-inf"]} in final_cost["anyOf"]


def test_a_bare_non_finite_number_is_refused_never_sent_as_null() -> None:
    record = {"job_id": "job-x", "costs": [[0, NAN]]}
    with pytest.raises(ValidationError):
        schemas.JobCosts.model_validate(record)
    assert schemas.reply(schemas.JobCosts, record).model_dump(mode="json") == {
        "job_id": "job-x",
        "costs": [[0, "nan"]],
    }


def test_the_models_name_every_job_state_and_group_field_of_their_one_home() -> None:
    assert list(schemas.StateCounts.model_fields) == [state.value for state in JobState]
    assert get_args(schemas.GroupField) == GROUP_FIELDS == tuple(schemas.GroupKey.model_fields)
