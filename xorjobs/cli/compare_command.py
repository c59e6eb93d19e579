"""``xorjobs compare``: two sweeps' grouped results side by side."""

from __future__ import annotations

from typing import Annotated

import typer

from xorjobs import analysis
from xorjobs.cli import render
from xorjobs.cli.grouped_tables import compare_table
from xorjobs.cli.options import By, Json, Threshold, parse_threshold
from xorjobs.client import backend_for
from xorjobs.errors import InvalidSpec
from xorjobs.filters import NO_JOB_FILTER, JobOrder
from xorjobs.settings import get_settings


def compare(
    sweep_a: Annotated[str, typer.Argument(help="The first sweep (A)")],
    sweep_b: Annotated[str, typer.Argument(help="The second sweep (B)")],
    by: By = "variant,lr",
    threshold: Threshold = None,
    as_json: Json = False,
) -> None:
    """Two sweeps' grouped results side by side (A's groups first; · where a sweep has no such group).

    Sweeps with different --steps or --log-every are refused (exit 2): their final costs and steps to
    converge do not measure the same thing.
    """
    fields = analysis.parse_by(by, "--by")
    limit = parse_threshold(threshold)
    backend = backend_for(get_settings())
    # The specs only (one job each), before the summaries: a 10,000-job sweep's jobs are not needed here.
    spec_a, spec_b = (
        backend.status(sweep, NO_JOB_FILTER, JobOrder(limit=1))["spec"] for sweep in (sweep_a, sweep_b)
    )
    problem = analysis.incomparable(spec_a, spec_b)
    if problem is not None:
        raise InvalidSpec(
            "SWEEP_B",
            f"{sweep_b} cannot be compared with {sweep_a}: {problem}; compare sweeps run with the same "
            "--steps and --log-every",
        )
    comparison = analysis.compare(
        backend.summary(sweep_a, fields, limit), backend.summary(sweep_b, fields, limit)
    )
    if as_json:
        render.print_json(comparison)
    else:
        render.stdout.print(compare_table(comparison))


def register(app: typer.Typer) -> None:
    app.command()(compare)
