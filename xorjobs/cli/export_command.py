"""``xorjobs export``: every cost curve of a sweep as CSV or JSON lines."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from xorjobs.cli import render
from xorjobs.cli.filter_options import FilterLrs, FilterSeeds, FilterVariants, States, job_filter
from xorjobs.cli.options import check_output_path, write_atomically
from xorjobs.client import backend_for
from xorjobs.errors import InvalidSpec
from xorjobs.export_formats import ExportFormat
from xorjobs.settings import get_settings


def export(
    sweep_id: Annotated[str | None, typer.Argument(help="Sweep id \\[default: the latest sweep]")] = None,
    export_format: Annotated[str, typer.Option("--format", "-f", help="csv or jsonl")] = "csv",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write to this file \\[default: standard output]")
    ] = None,
    state: States = None,
    variant: FilterVariants = None,
    lr: FilterLrs = None,
    seed: FilterSeeds = None,
) -> None:
    """Every cost curve of a sweep as CSV or JSON lines, one row per job and logged step.

    Columns: job_id, variant, seed, lr, device, step, cost (non-finite costs as nan, inf, -inf).
    --state, --variant, --lr and --seed keep only the matching jobs.
    """
    filters = job_filter(state, variant, lr, seed)
    try:
        chosen = ExportFormat(export_format)
    except ValueError:
        raise InvalidSpec("--format", f"{export_format!r} is not csv or jsonl") from None
    if output is not None:
        check_output_path(output)
    chunks = iter(backend_for(get_settings()).export_costs(sweep_id, chosen, filters))
    first = next(chunks, "")  # an unknown sweep fails here, before any file is created
    if output is None:
        _write_all(sys.stdout, first, chunks)
        return
    write_atomically(output, lambda file: _write_all(file, first, chunks), binary=False)
    render.stderr.print(f"wrote {render.safe(output)}")


def _write_all(file: Any, first: str, chunks: Iterator[str]) -> None:
    file.write(first)
    for chunk in chunks:
        file.write(chunk)


def register(app: typer.Typer) -> None:
    app.command()(export)
