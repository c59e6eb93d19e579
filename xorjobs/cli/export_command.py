"""``xorjobs export``: every cost curve of a sweep as CSV or JSON lines."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from xorjobs.cli import render
from xorjobs.cli.backends import backend_for
from xorjobs.errors import InvalidSpec
from xorjobs.export_formats import ExportFormat
from xorjobs.settings import get_settings


def export(
    sweep_id: Annotated[str | None, typer.Argument(help="Sweep id \\[default: the latest sweep]")] = None,
    export_format: Annotated[str, typer.Option("--format", "-f", help="csv or jsonl")] = "csv",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write to this file \\[default: standard output]")
    ] = None,
) -> None:
    """Every cost curve of a sweep as CSV or JSON lines, one row per job and logged step.

    Columns: job_id, variant, seed, lr, device, step, cost (non-finite costs as nan, inf, -inf).
    """
    try:
        chosen = ExportFormat(export_format)
    except ValueError:
        raise InvalidSpec("--format", f"{export_format!r} is not csv or jsonl") from None
    chunks = iter(backend_for(get_settings()).export_costs(sweep_id, chosen))
    first = next(chunks, "")  # an unknown sweep fails here, before any file is created
    if output is None:
        _write_all(sys.stdout, first, chunks)
        return
    partial = output.with_name(output.name + ".partial")
    with partial.open("w", encoding="utf-8", newline="") as file:
        _write_all(file, first, chunks)
    os.replace(partial, output)  # a reader never sees half an export
    render.stderr.print(f"wrote {output}")


def _write_all(file: Any, first: str, chunks: Iterator[str]) -> None:
    file.write(first)
    for chunk in chunks:
        file.write(chunk)


def register(app: typer.Typer) -> None:
    app.command()(export)
