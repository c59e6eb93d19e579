"""``xorjobs spec``: a past sweep's document, so ``xorjobs submit -f <(xorjobs spec SWEEP_ID)`` runs it again
(issue 12 §1). A sampled field is printed as its request with the sampler seed it was drawn with: the draw
is deterministic, so the same jobs come back."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from xorjobs.cli import render
from xorjobs.cli.options import Json
from xorjobs.client import backend_for
from xorjobs.filters import NO_JOB_FILTER, JobOrder
from xorjobs.settings import get_settings
from xorjobs.sweep_file import document_of, dump_document


def spec(
    sweep_id: Annotated[str | None, typer.Argument(help="Sweep id [default: the latest sweep]")] = None,
    as_json: Json = False,
) -> None:
    """Print a sweep's document (YAML; --json: JSON), which `xorjobs submit -f FILE` runs again."""
    # One job is enough: only the sweep's stored spec is wanted.
    status = backend_for(get_settings()).status(sweep_id, NO_JOB_FILTER, JobOrder(limit=1))
    document = document_of(status["spec"])
    if as_json:
        render.print_json(document)
        return
    comment = f"sweep {status['sweep_id']}: `xorjobs submit -f FILE` runs it again"
    sys.stdout.write(dump_document(document, comment))


def register(app: typer.Typer) -> None:
    app.command()(spec)
