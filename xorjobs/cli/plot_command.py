"""``xorjobs plot``: cost curves as a PNG (drawn by the backend with ``xorjobs.plots``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from xorjobs import analysis
from xorjobs.cli import render
from xorjobs.cli.options import check_output_path, parse_threshold, write_atomically
from xorjobs.client import backend_for
from xorjobs.errors import InvalidSpec
from xorjobs.settings import get_settings


def plot(
    sweep_id: Annotated[str | None, typer.Argument(help="Sweep id \\[default: the latest sweep]")] = None,
    output: Annotated[
        Path, typer.Option("--output", "-o", help="The PNG file to write (its name ends in .png)")
    ] = Path("curves.png"),
    by: Annotated[
        str,
        typer.Option(
            "--by", help="One colour per group of these fields (median and 25-75% band over the rest)"
        ),
    ] = "variant",
    job: Annotated[str | None, typer.Option("--job", help="Plot this one job's curve instead")] = None,
    threshold: Annotated[
        str | None, typer.Option("--threshold", help="Also draw this cost as a dashed line")
    ] = None,
) -> None:
    """Draw cost curves (log-scale cost against step) as a PNG."""
    # PNG only: the API serves PNG and an HTTP-only client has no matplotlib to convert it, so a .jpg or
    # .svg name is refused rather than given PNG bytes under the wrong name.
    check_output_path(output, "--output", suffixes=(".png",))
    backend = backend_for(get_settings())
    if job is not None:
        if sweep_id is not None:
            raise InvalidSpec("--job", "give a sweep id or --job, not both")
        png = backend.job_plot(job)
    else:
        line = None if threshold is None else parse_threshold(threshold)
        png = backend.sweep_plot(sweep_id, analysis.parse_by(by, "--by"), line)
    write_atomically(output, lambda file: file.write(png), binary=True)
    render.stderr.print(f"wrote {render.safe(output)}")


def register(app: typer.Typer) -> None:
    app.command()(plot)
