"""The API through FastAPI's TestClient on a real SQLite file (no worker needed for these)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from tests.helpers import BAD_SPECS
from xorjobs.api.main import create_app
from xorjobs.settings import Settings
from xorjobs.store.engine import read_session
from xorjobs.store.schema import upgrade
from xorjobs.store.tables import Job, Sweep

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def api_settings(tmp_path: Path) -> Settings:
    settings = Settings(home=tmp_path / "home", api_token=TOKEN)
    upgrade(settings.resolved_database_url)  # the API never migrates: `xorjobs db upgrade` comes first
    return settings


@pytest.fixture
def client(api_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(api_settings)) as test_client:
        yield test_client


def stored_counts(settings: Settings) -> tuple[int, int]:
    with read_session(settings.resolved_database_url) as session:
        return (
            session.scalar(select(func.count()).select_from(Sweep)) or 0,
            session.scalar(select(func.count()).select_from(Job)) or 0,
        )


def test_health_needs_no_token_and_reports_each_part(client: TestClient) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "broker": "ok"}


def test_health_names_the_broker_when_it_is_down(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "h", broker_url="redis://127.0.0.1:1/0")
    upgrade(settings.resolved_database_url)
    with TestClient(create_app(settings)) as client:
        response = client.get("/health")
    assert response.status_code == 503
    assert response.json()["broker"] == "unreachable" and response.json()["database"] == "ok"


def test_create_sweep_returns_one_job_per_combination_in_expansion_order(client: TestClient) -> None:
    response = client.post(
        "/sweeps",
        json={"variants": ["nn", "backprop"], "seeds": [3, 1], "lrs": [0.5], "steps": 50},
        headers=AUTH,
    )
    assert response.status_code == 201
    body = response.json()
    assert body["sweep_id"].startswith("sw-")
    assert [(j["variant"], j["seed"], j["lr"]) for j in body["jobs"]] == [
        ("nn", 3, 0.5), ("nn", 1, 0.5), ("backprop", 3, 0.5), ("backprop", 1, 0.5),
    ]  # fmt: skip
    assert {j["state"] for j in body["jobs"]} == {"queued"} and {j["queue"] for j in body["jobs"]} == {"cpu"}
    shown = client.get(f"/sweeps/{body['sweep_id']}", headers=AUTH).json()
    assert shown["counts"] == {"queued": 4, "running": 0, "succeeded": 0, "failed": 0, "cancelled": 0}
    assert client.get("/sweeps", headers=AUTH).json()["sweeps"][0]["sweep_id"] == body["sweep_id"]


def test_a_sweep_with_no_worker_on_its_queue_carries_a_warning(client: TestClient) -> None:
    body = client.post("/sweeps", json={"variants": ["nn"], "device": "cuda"}, headers=AUTH).json()
    assert body["jobs"][0]["queue"] == "gpu"
    assert any("no live worker serves queue 'gpu'" in warning for warning in body["warnings"])


@pytest.mark.parametrize(("fields", "field"), BAD_SPECS)
def test_invalid_sweeps_get_422_naming_the_field_and_write_nothing(
    client: TestClient, api_settings: Settings, fields: dict[str, object], field: str
) -> None:
    # json.dumps writes NaN/Infinity literals, as a careless client would.
    body = json.dumps(fields).encode()
    response = client.post("/sweeps", content=body, headers={**AUTH, "content-type": "application/json"})
    assert response.status_code == 422
    assert field.split(".")[0] in response.json()["detail"]
    assert stored_counts(api_settings) == (0, 0)


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"lrs": [-1]}, "body.lrs.0", "Input should be greater than 0"),  # pydantic's own placement
        ({"lrs": {"sample": "uniform", "low": 0, "high": 2, "count": 3}}, "body.lrs.low", "Input should be"),
        ({"lrs": {"sample": "uniform", "low": 3, "high": 2, "count": 3}}, "body.lrs.high", "must be above"),
        ({"seeds": {"sample": "random", "count": 2, "x": 1}}, "body.seeds.x", "Extra inputs"),
        ({"sampler_seed": 3}, "body.sampler_seed", "nothing is sampled"),
        ({"lrs": [0.1, 0.1]}, "body.lrs", "0.1 and 0.1 are the same"),
    ],
)
def test_a_422_names_the_key_path_of_a_model_validators_error(
    client: TestClient, fields: dict[str, object], field: str, message: str
) -> None:
    """A validator of the whole spec (a sampled request's key, the sampler seed) is placed at ``body`` by
    pydantic; its key path is the field, as for a plain field's error."""
    response = client.post("/sweeps", json=fields, headers=AUTH)
    assert response.status_code == 422
    [error] = response.json()["errors"]
    assert error["field"] == field and message in error["message"], error
    assert response.json()["detail"] == f"{field}: {error['message']}"


RAW_BAD_BODIES = [
    b"\x80",  # not even UTF-8 (FastAPI's own answer would be 400)
    b'{"lrs": [NaN]}',
    b'{"lrs": [Infinity]}',
    b'{"lrs": [1e309]}',
    b'{"seeds": [1e400]}',
    b'{"seeds": [1',
    b"not json",
    b"[]",
    b'{"steps": "10"}',
    b'{"variants": "nn"}',
    b'{"seeds": [-5]}',
    b'{"variants": ["nn\'; DROP TABLE jobs;--"]}',
]


@pytest.mark.parametrize("body", RAW_BAD_BODIES)
def test_malformed_bodies_get_422_and_write_nothing(
    client: TestClient, api_settings: Settings, body: bytes
) -> None:
    response = client.post("/sweeps", content=body, headers={**AUTH, "content-type": "application/json"})
    assert response.status_code == 422
    json.loads(response.text)  # the error itself is valid JSON (no bare NaN)
    assert stored_counts(api_settings) == (0, 0)


def test_an_oversized_body_gets_413_and_writes_nothing(client: TestClient, api_settings: Settings) -> None:
    body = json.dumps({"seeds": list(range(300_000))}).encode()
    response = client.post("/sweeps", content=body, headers={**AUTH, "content-type": "application/json"})
    assert response.status_code == 413
    assert stored_counts(api_settings) == (0, 0)


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic abc"}])
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/sweeps"),
        ("POST", "/sweeps"),
        ("GET", "/sweeps/sw-x"),
        ("GET", "/jobs/job-x"),
        ("GET", "/jobs/job-x/costs"),
    ],
)
def test_every_route_but_health_requires_the_token(
    client: TestClient, api_settings: Settings, headers: dict[str, str], method: str, path: str
) -> None:
    response = client.request(method, path, headers=headers, json={} if method == "POST" else None)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert stored_counts(api_settings) == (0, 0)


@pytest.mark.parametrize(
    "path", ["/sweeps/sw-nope", "/sweeps/sw-nope/results", "/jobs/job-nope", "/jobs/job-nope/costs"]
)
def test_unknown_ids_get_404(client: TestClient, path: str) -> None:
    assert client.get(path, headers=AUTH).status_code == 404


def test_idempotency_key_returns_the_same_sweep(client: TestClient, api_settings: Settings) -> None:
    headers = {**AUTH, "Idempotency-Key": "abc-123"}
    first = client.post("/sweeps", json={"variants": ["nn"], "seeds": [1, 2]}, headers=headers)
    second = client.post("/sweeps", json={"variants": ["nn"], "seeds": [1, 2]}, headers=headers)
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json()["sweep_id"] == second.json()["sweep_id"]
    assert stored_counts(api_settings) == (1, 2)


def test_openapi_schema_documents_limits_and_auth(client: TestClient) -> None:
    schema = client.get("/openapi.json", headers=AUTH).json()
    # The request's seeds and lrs are a list or a sample to draw (issue 12 §2); a response holds the list.
    spec = schema["components"]["schemas"]["SweepSpec-Input"]["properties"]
    assert spec["steps"]["maximum"] == 1_000_000 and spec["seeds"]["anyOf"][0]["maxItems"] == 10_000
    assert spec["lrs"]["anyOf"][1]["properties"]["sample"]["enum"] == ["log_uniform", "uniform"]
    assert [form.get("title") for form in spec["seeds"]["anyOf"]] == [None, "SeedSample", "SeedRange"]
    assert spec["seeds"]["anyOf"][2]["required"] == ["first", "last"]
    stored = schema["components"]["schemas"]["SweepSpec-Output"]["properties"]
    assert stored["seeds"]["maxItems"] == 10_000 and "sampling" in stored
    assert "401" in schema["paths"]["/sweeps"]["post"]["responses"]


def test_the_api_process_never_imports_torch(tmp_path: Path) -> None:
    import subprocess
    import sys

    upgrade(Settings(home=tmp_path).resolved_database_url)
    code = (
        "import sys; from fastapi.testclient import TestClient; from xorjobs.api.main import create_app; "
        "from xorjobs.settings import Settings; "
        f"c = TestClient(create_app(Settings(home={str(tmp_path)!r}))); "
        "c.post('/sweeps', json={'variants': ['nn'], 'steps': 5}); c.get('/sweeps'); "
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
