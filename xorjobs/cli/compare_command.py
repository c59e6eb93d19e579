"""``xorjobs compare``: two sweeps' grouped results side by side."""

from __future__ import annotations

from typing import Annotated

import typer

from xorjobs import analysis
from xorjobs.cli import render
from xorjobs.cli.backends import backend_for
from xorjobs.cli.grouped_tables import compare_table
from xorjobs.cli.options import By, Json, Threshold, parse_threshold
from xorjobs.settings import get_settings


def compare(
    sweep_a: Annotated[str, typer.Argument(help="The first sweep (A)")],
    sweep_b: Annotated[str, typer.Argument(help="The second sweep (B)")],
    by: By = "variant,lr",
    threshold: Threshold = None,
    as_json: Json = False,
) -> None:
    """Two sweeps' grouped results side by side (A's groups first; · where a sweep has no such group)."""
    fields = analysis.parse_by(by, "--by")
    limit = parse_threshold(threshold)
    backend = backend_for(get_settings())
    comparison = analysis.compare(
        backend.summary(sweep_a, fields, limit), backend.summary(sweep_b, fields, limit)
    )
    if as_json:
        render.print_json(comparison)
    else:
        render.stdout.print(compare_table(comparison))


def register(app: typer.Typer) -> None:
    app.command()(compare)
