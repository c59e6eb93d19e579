"""The CLI's ``--json`` shapes are the API's documented ones (issue 10, section 4).

In-process mode on a real SQLite store (``xorjobs run`` trains short jobs with the embedded worker):
every command's JSON validates against the response model of ``api/schemas.py`` it corresponds to
(``submit``, ``status`` and ``results`` print a subset of their route's fields, as the README says), and
equals what the API answers for the same store, field for field.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from pydantic import BaseModel, create_model
from typer.testing import CliRunner

from tests.services import XORJOBS, clean_env
from xorjobs.api import schemas
from xorjobs.api.main import create_app
from xorjobs.cli.app import app as cli
from xorjobs.settings import Settings, get_settings

SWEEP = ["--variant", "nn,backprop", "--seed", "1,2", "--steps", "50"]


def cli_json(*args: str) -> Any:
    get_settings.cache_clear()
    result = CliRunner().invoke(cli, [*args, "--json"])
    assert result.exit_code == 0, f"xorjobs {' '.join(args)}: {result.output}"
    return json.loads(result.stdout)


def fields_of(model: type[schemas.Shape], *names: str) -> type[BaseModel]:
    """A model of just these fields of ``model``, with their types (unknown keys still refused)."""
    fields: dict[str, Any] = {name: (model.model_fields[name].annotation, ...) for name in names}
    return create_model(f"{model.__name__}Subset", __base__=schemas.Shape, **fields)


def check(printed: Any, model: type[BaseModel], api_body: Any) -> None:
    model.model_validate(printed)
    assert printed == {key: api_body[key] for key in printed}, model.__name__


def test_the_cli_prints_the_documented_shapes_and_the_api_s_values(tmp_path: Path) -> None:
    # `run` in its own process, as a user runs it: its in-process Celery worker is built once per
    # interpreter, so inside this pytest process it could consume another test's queue folder.
    process = subprocess.run(
        [XORJOBS, "run", *SWEEP, "--json"],
        env=clean_env(XORJOBS_HOME=os.environ["XORJOBS_HOME"]),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert process.returncode == 0, process.stderr
    ran = json.loads(process.stdout)
    sweep_id = ran["sweep_id"]
    job_id = ran["jobs"][0]["id"]
    submitted = cli_json("submit", "--variant", "nn", "--steps", "50", "--name", "second")
    printed: dict[str, tuple[Any, type[BaseModel], str]] = {
        "run": (ran, fields_of(schemas.SweepResults, "sweep_id", "jobs"), f"/sweeps/{sweep_id}/results"),
        "status": (
            cli_json("status", sweep_id),
            fields_of(schemas.SweepStatus, "sweep_id", "counts", "jobs"),
            f"/sweeps/{sweep_id}",
        ),
        "results": (
            cli_json("results", sweep_id),
            fields_of(schemas.SweepResults, "sweep_id", "jobs"),
            f"/sweeps/{sweep_id}/results",
        ),
        "results --by": (
            cli_json("results", sweep_id, "--by", "variant"),
            schemas.Summary,
            f"/sweeps/{sweep_id}/summary?by=variant",
        ),
        "show": (cli_json("show", job_id), schemas.Job, f"/jobs/{job_id}"),
        "costs": (cli_json("costs", job_id), schemas.JobCosts, f"/jobs/{job_id}/costs"),
        "sweeps": (cli_json("sweeps"), schemas.SweepList, "/sweeps?limit=50"),
        "prune --dry-run": (
            cli_json("prune", "--older-than", "0s", "--dry-run"),
            schemas.Pruned,
            "/sweeps/prune?older_than_seconds=0&dry_run=true",
        ),
    }
    comparison = cli_json("compare", sweep_id, submitted["sweep_id"], "--by", "variant")
    schemas.Comparison.model_validate(comparison)
    fields_of(schemas.Submitted, "sweep_id", "created", "jobs").model_validate(submitted)  # issue 13: created
    assert [job["state"] for job in submitted["jobs"]] == ["queued"]
    assert ran["jobs"][0]["costs"] and {job["state"] for job in ran["jobs"]} == {"succeeded"}

    settings = Settings()  # the store the CLI used (XORJOBS_HOME of this test)
    with TestClient(create_app(settings)) as api:
        for command, (body, model, path) in printed.items():
            method = "POST" if "prune" in path else "GET"
            answer = api.request(method, path)
            assert answer.status_code == 200, f"{command}: {answer.text[:200]}"
            check(body, model, answer.json())
        deleted = cli_json("delete", submitted["sweep_id"], "--cancel", "--yes")
    schemas.Deleted.model_validate(deleted)
    assert [sweep["sweep_id"] for sweep in deleted["deleted"]] == [submitted["sweep_id"]]
