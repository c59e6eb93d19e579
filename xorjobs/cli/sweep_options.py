"""The sweep flags shared by ``submit`` and ``run``, and turning them into a validated SweepSpec."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from xorjobs.defaults import DEFAULT_STEPS
from xorjobs.errors import InvalidSpec
from xorjobs.spec import (
    SweepSpec,
    parse_integer,
    parse_lrs,
    parse_seeds,
    parse_stop_below,
    split_tokens,
    validate_spec,
)

_SPEC_FIELD_TO_FLAG = {
    "variants": "--variant",
    "seeds": "--seed",
    "lrs": "--lr",
    "steps": "--steps",
    "log_every": "--log-every",
    "device": "--device",
    "name": "--name",
    "stop_below": "--stop-below",
    "stop_when_solved": "--stop-when-solved",
}

Variants = Annotated[
    list[str] | None,
    typer.Option(
        "--variant",
        "-v",
        metavar="VARIANTS",
        help="nn, wide_deep or backprop; comma list, may repeat \\[default: all three]",
    ),
]
Seeds = Annotated[
    list[str] | None,
    typer.Option(
        "--seed",
        "-s",
        metavar="SEEDS",
        help="Seeds: 777, a comma list, or an inclusive range 1-10; may repeat \\[default: 777]",
    ),
]
Lrs = Annotated[
    list[str] | None,
    typer.Option(
        "--lr", metavar="LRS", help="Learning rates, 0 < lr <= 1000; comma list, may repeat \\[default: 1.0]"
    ),
]
Steps = Annotated[str, typer.Option("--steps", metavar="N", help="Training steps per job (1 to 1,000,000)")]
LogEvery = Annotated[
    str | None,
    typer.Option(
        "--log-every", metavar="K", help="Store the cost every K steps \\[default: min(100, steps)]"
    ),
]
Device = Annotated[
    str, typer.Option("--device", "-d", metavar="DEVICE", help="cpu or cuda (cuda jobs go to the gpu queue)")
]
Name = Annotated[str | None, typer.Option("--name", help="A name for the sweep")]
StopBelow = Annotated[
    str | None,
    typer.Option(
        "--stop-below",
        metavar="COST",
        help="Stop a job at the first logged step whose cost is below COST (> 0) \\[default: off]",
    ),
]
StopWhenSolved = Annotated[
    bool,
    typer.Option(
        "--stop-when-solved",
        help="Stop a job at the first logged step whose hypothesis labels all four XOR inputs right",
    ),
]


def build_spec(
    variants: list[str] | None,
    seeds: list[str] | None,
    lrs: list[str] | None,
    steps: str = str(DEFAULT_STEPS),
    log_every: str | None = None,
    device: str = "cpu",
    name: str | None = None,
    *,
    stop_below: str | None = None,
    stop_when_solved: bool = False,
) -> SweepSpec:
    """Parse the flags into the one job contract; errors name the flag, e.g. ``--lr: ...``."""
    fields: dict[str, Any] = {"device": device, "steps": parse_integer(steps, "--steps")}
    if log_every is not None:
        fields["log_every"] = parse_integer(log_every, "--log-every")
    if variants:
        fields["variants"] = split_tokens(variants, "--variant")
    if seeds:
        fields["seeds"] = _flag_errors(parse_seeds, seeds)
    if lrs:
        fields["lrs"] = _flag_errors(parse_lrs, lrs)
    if name is not None:
        fields["name"] = name
    if stop_below is not None:
        fields["stop_below"] = parse_stop_below(stop_below)
    if stop_when_solved:
        fields["stop_when_solved"] = True
    try:
        return validate_spec(fields)
    except InvalidSpec as error:
        field = error.field.split(".")[0]
        raise InvalidSpec(_SPEC_FIELD_TO_FLAG.get(field, field), _with_value(error, fields)) from None


def _flag_errors(parse: Any, values: list[str]) -> Any:
    try:
        return parse(values)
    except InvalidSpec as error:
        raise InvalidSpec(f"--{error.field}", error.message) from None


def _with_value(error: InvalidSpec, fields: dict[str, Any]) -> str:
    """Add the offending value to pydantic's message ("Input should be ..." alone does not say which)."""
    field, _, index = error.field.partition(".")
    value = fields.get(field)
    if index.isdigit() and isinstance(value, list) and int(index) < len(value):
        if repr(value[int(index)]) in error.message:
            return error.message
        return f"{error.message} (got {value[int(index)]!r})"
    if field in fields and not isinstance(value, list) and error.message.startswith("Input"):
        return f"{error.message} (got {value!r})"
    return error.message
