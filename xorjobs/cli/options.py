"""Options that several commands share, with their parsers: one definition of each flag's help text."""

from __future__ import annotations

from typing import Annotated

import typer

from xorjobs import analysis
from xorjobs.errors import InvalidSpec

Json = Annotated[bool, typer.Option("--json", help='Print JSON (non-finite numbers as "nan"/"inf")')]
By = Annotated[
    str | None,
    typer.Option(
        "--by", help=f"Group by these job fields, comma-separated: {', '.join(analysis.GROUP_FIELDS)}"
    ),
]
Threshold = Annotated[
    str | None,
    typer.Option(
        "--threshold",
        help="A job converged at its first logged step with cost below this "
        f"\\[default: {analysis.DEFAULT_THRESHOLD}]",
    ),
]
Yes = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation")]


def parse_threshold(text: str | None) -> float:
    """``--threshold`` as a positive finite float; one-line InvalidSpec naming the flag otherwise."""
    if text is None:
        return analysis.DEFAULT_THRESHOLD
    try:
        value = float(text)
    except ValueError:
        raise InvalidSpec("--threshold", f"{text!r} is not a number") from None
    return analysis.check_threshold(value, "--threshold")
