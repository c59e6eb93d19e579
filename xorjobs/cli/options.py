"""Options that several commands share, with their parsers: one definition of each flag's help text."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

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


def check_output_path(path: Path, flag: str = "--output", suffixes: tuple[str, ...] = ()) -> Path:
    """Refuse an output file that cannot be written, before any work is done (one line naming ``flag``):
    a missing folder, a folder, an unwritable place; and, when ``suffixes`` is given, another suffix."""
    if suffixes and path.suffix.lower() not in suffixes:
        raise InvalidSpec(
            flag, f"{str(path)!r} must end in {' or '.join(suffixes)} (that is what is written)"
        )
    parent = path.parent
    if not parent.is_dir():
        raise InvalidSpec(flag, f"cannot write {str(path)!r}: the folder {str(parent)!r} does not exist")
    if path.is_dir():
        raise InvalidSpec(flag, f"cannot write {str(path)!r}: it is a folder")
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise InvalidSpec(flag, f"cannot write {str(path)!r}: permission denied")
    return path


def write_atomically(path: Path, write: Callable[[Any], None], binary: bool, flag: str = "--output") -> None:
    """Write through ``path.partial`` and rename, so a reader never sees half a file and a failure leaves
    nothing behind; an OSError (disk full, /proc, ...) is one line naming ``flag``."""
    partial = path.with_name(path.name + ".partial")
    try:
        with partial.open("wb") if binary else partial.open("w", encoding="utf-8", newline="") as file:
            write(file)
        os.replace(partial, path)
    except OSError as error:
        with contextlib.suppress(OSError):
            partial.unlink(missing_ok=True)
        raise InvalidSpec(flag, f"cannot write {str(path)!r}: {error.strerror or error}") from None
