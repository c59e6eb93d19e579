"""The OpenAPI schema and /docs (issue 13 §2): behind the token like every route but /health, and the
Swagger UI page loads nothing from another host (its files are served from api/static/swagger-ui).
The page itself is rendered in a real browser in tests/test_dashboard.py."""

from __future__ import annotations

import importlib
import pkgutil
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from typer.main import get_command

from tests.helpers import TOKEN, write_known_sweep
from xorjobs.api import routes
from xorjobs.api.main import create_app
from xorjobs.api.routes.docs import SWAGGER_UI_FOLDER, SWAGGER_UI_VERSION
from xorjobs.cli.app import app as cli_app
from xorjobs.settings import Settings

AUTH = {"Authorization": f"Bearer {TOKEN}"}
README = (Path(__file__).resolve().parent.parent / "README.md").read_text()
EXTERNAL_URL = re.compile(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", re.IGNORECASE)


@pytest.fixture
def url(tmp_path: Path) -> str:
    store = f"sqlite:///{tmp_path / 'store.db'}"
    write_known_sweep(store)
    return store


@pytest.fixture
def client(url: str) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(database_url=url, api_token=TOKEN))) as test_client:
        yield test_client


def test_the_schema_and_the_docs_page_need_the_token(client: TestClient) -> None:
    assert client.get("/openapi.json").status_code == 401
    assert client.get("/openapi.json", headers={"Authorization": "Bearer wrong"}).status_code == 401
    schema = client.get("/openapi.json", headers=AUTH)
    assert schema.status_code == 200 and "/sweeps" in schema.json()["paths"]
    # A browser page: sent to the dashboard's login, as / is; the bearer header works too.
    page = client.get("/docs", follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"] == "/login?next=%2Fdocs"
    assert client.get("/docs", headers=AUTH).status_code == 200
    # Logged in, the session cookie opens both: what Swagger UI's own fetch of the schema sends.
    client.post(
        "/login",
        content=f"token={TOKEN}&next=/docs".encode(),
        headers={"content-type": "application/x-www-form-urlencoded"},
        follow_redirects=False,
    )
    assert client.get("/docs").status_code == 200 and client.get("/openapi.json").status_code == 200
    assert client.get("/redoc").status_code == 404  # ReDoc would load its script from a CDN


def test_without_a_token_the_schema_and_docs_are_open(url: str) -> None:
    with TestClient(create_app(Settings(database_url=url))) as client:
        assert client.get("/openapi.json").status_code == 200
        assert client.get("/docs").status_code == 200


def test_the_docs_page_loads_swagger_ui_from_this_api_only(client: TestClient) -> None:
    page = client.get("/docs", headers=AUTH)
    assert not EXTERNAL_URL.search(page.text), "an external URL in /docs"
    assert "<script>" not in page.text  # no inline script: the CSP forbids it
    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "connect-src 'self'" in policy
    assert "script-src 'self';" in policy
    assets = re.findall(r'(?:src|href)="(/static/[^"]+)"', page.text)
    assert len(assets) == 4  # favicon, css, bundle, the starter
    for path in assets:
        served = client.get(path)
        assert served.status_code == 200, path
        if "swagger-ui/" in path:
            assert served.content == (SWAGGER_UI_FOLDER / path.rsplit("/", 1)[1]).read_bytes()
    # Swagger UI would otherwise send the schema to validator.swagger.io for its badge.
    assert "validatorUrl: null" in client.get("/static/docs.js").text
    assert client.get(f"/static/swagger-ui/{SWAGGER_UI_VERSION}/LICENSE").status_code == 404  # by name only
    assert client.get("/static/swagger-ui/0.0.1/swagger-ui.css").status_code == 404


def test_every_route_is_in_the_readmes_api_table() -> None:
    table = README.split("## HTTP API", 1)[1].split("\n\n", 2)[1]
    assert table.startswith("| route |")
    for module in pkgutil.iter_modules(routes.__path__):  # every router module, even one not yet included
        for route in importlib.import_module(f"{routes.__name__}.{module.name}").router.routes:
            assert isinstance(route, APIRoute)
            path = re.sub(r"\{(sweep|job)_id\}", "{id}", route.path)
            path = "/static/…" if path.startswith("/static/") else path
            for method in route.methods or ():
                assert re.search(f"`{method} {re.escape(path)}[`\\[?]", table), (
                    f"{method} {path} is not in the table"
                )


def test_every_command_and_flag_is_in_the_readme() -> None:
    commands = get_command(cli_app).commands  # type: ignore[attr-defined]
    missing = []
    for name, command in commands.items():
        for full, leaf in [(f"{name} {sub}", c) for sub, c in getattr(command, "commands", {}).items()] or [
            (name, command)
        ]:
            if not leaf.hidden and f"xorjobs {full}" not in README:
                missing.append(f"xorjobs {full}")
            flags = {o for p in leaf.params for o in getattr(p, "opts", []) if o.startswith("--")}
            missing += [
                f"{full} {f}" for f in sorted(flags - {"--help"}) if not re.search(f"{f}(?![\\w-])", README)
            ]
    assert not missing, missing
