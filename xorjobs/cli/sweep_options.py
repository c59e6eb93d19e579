"""The sweep flags shared by ``submit`` and ``run``, and turning them into a validated SweepSpec.

With ``-f FILE`` the sweep comes from a sweep file (``xorjobs.sweep_file``) and each flag given beside it
replaces that key; ``--lr loguniform:1e-3:10:50``, ``--lr uniform:0.1:2:20`` and ``--seed random:100`` are
the compact forms of the sampled requests (``xorjobs.spec.LrSample``/``SeedSample``), parsed by
``xorjobs.spec_tokens``.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Annotated, Any

import typer

from xorjobs.defaults import DEFAULT_STEPS
from xorjobs.errors import InvalidSpec, got
from xorjobs.spec import SweepSpec, validate_spec
from xorjobs.spec_tokens import parse_integer, parse_lr_flag, parse_seed_flag, parse_stop_below, split_tokens

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
    "sampler_seed": "--sampler-seed",
}
_SPEC_FIELD_TO_PARAMETER = {"variants": "variant", "seeds": "seed", "lrs": "lr"}
"""The parameter of each field whose flag is not named after it (the others are: ``steps``, ...)."""

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
        help="Seeds: 777, a comma list, or an inclusive range 1-10; may repeat; or random:COUNT (COUNT "
        "random seeds drawn at submit) \\[default: 777]",
    ),
]
Lrs = Annotated[
    list[str] | None,
    typer.Option(
        "--lr",
        metavar="LRS",
        help="Learning rates, 0 < lr <= 1000; comma list, may repeat; or COUNT drawn at submit: "
        "loguniform:LOW:HIGH:COUNT, uniform:LOW:HIGH:COUNT \\[default: 1.0]",
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
        help="Stop a job at the first logged step whose cost is below COST (> 0; off: no threshold, e.g. to "
        "replace a sweep file's) \\[default: off]",
    ),
]
StopWhenSolved = Annotated[
    bool,
    typer.Option(
        "--stop-when-solved/--no-stop-when-solved",
        help="Stop a job at the first logged step whose hypothesis labels all four XOR inputs right "
        "(--no-stop-when-solved: not, e.g. to replace a sweep file's)",
        show_default=False,
    ),
]
SamplerSeed = Annotated[
    str | None,
    typer.Option(
        "--sampler-seed",
        metavar="N",
        help="Seed of the draw of sampled --lr/--seed (same seed, same jobs) \\[default: generated, stored]",
    ),
]
# A list, so that a second -f is seen (click keeps the last of a plain option) and refused in build_spec.
SweepFile = Annotated[
    list[str] | None,
    typer.Option(
        "--file",
        "-f",
        metavar="FILE",
        help="Read the sweep from a YAML file (.toml: TOML, .json: JSON; -: stdin); a sweep flag given too "
        "replaces that key",
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
    sampler_seed: str | None = None,
    sweep_file: list[str] | None = None,
    given: Collection[str] | None = None,
) -> SweepSpec:
    """Parse the flags into the one job contract; errors name the flag, e.g. ``--lr: ...``.

    With ``sweep_file``, the flags named in ``given`` (parameter names: those typed on the command line)
    replace the file's keys; the others keep the file's values (or SweepSpec's defaults)."""
    fields: dict[str, Any] = {"device": device, "steps": parse_integer(steps, "--steps")}
    if log_every is not None:
        fields["log_every"] = parse_integer(log_every, "--log-every")
    if variants:
        fields["variants"] = split_tokens(variants, "--variant")
    if seeds:
        fields["seeds"] = _flag_errors(parse_seed_flag, seeds)
    if lrs:
        fields["lrs"] = _flag_errors(parse_lr_flag, lrs)
    if sampler_seed is not None:
        fields["sampler_seed"] = _flag_errors(
            lambda texts: parse_integer(texts[0], "sampler-seed"), [sampler_seed]
        )
    if name is not None:
        fields["name"] = name
    if stop_below is not None:  # "off": none, so that it can replace a sweep file's stop_below
        fields["stop_below"] = None if stop_below.strip() == "off" else parse_stop_below(stop_below)
    fields["stop_when_solved"] = stop_when_solved
    if sweep_file:
        if len(sweep_file) > 1:  # it silently used the last one (click's rule for a repeated option)
            shown = ", ".join(sweep_file)
            raise InvalidSpec("--file", f"given {len(sweep_file)} times ({shown}); give one sweep file")
        return _spec_from_file(sweep_file[0], fields, given)
    try:
        return validate_spec(fields)
    except InvalidSpec as error:
        raise _named_by_flag(error, fields) from None


def _spec_from_file(path: str, fields: dict[str, Any], given: Collection[str] | None) -> SweepSpec:
    from xorjobs.sweep_file import load_sweep_document, spec_from_document

    if given is None:  # no command line to ask: the flags away from their defaults
        given = {_parameter(field) for field, value in fields.items() if value != _FLAG_DEFAULTS.get(field)}
    overrides = {field: value for field, value in fields.items() if _parameter(field) in given}
    try:
        return spec_from_document(load_sweep_document(path), overrides)
    except InvalidSpec as error:
        if error.field.split(".")[0] in overrides:  # a flag's value, not the file's
            raise _named_by_flag(error, overrides) from None
        raise


_FLAG_DEFAULTS: dict[str, Any] = {"device": "cpu", "steps": DEFAULT_STEPS, "stop_when_solved": False}


def _parameter(field: str) -> str:
    return _SPEC_FIELD_TO_PARAMETER.get(field, field)


def spec_from_command_line(ctx: typer.Context) -> SweepSpec:
    """The sweep that ``submit``'s or ``run``'s flags (and ``-f``) ask for, read from the command's
    parsed parameters (both commands name them alike), the typed flags overriding the file's keys."""
    flags = ctx.params
    return build_spec(
        flags["variant"],
        flags["seed"],
        flags["lr"],
        flags["steps"],
        flags["log_every"],
        flags["device"],
        flags["name"],
        stop_below=flags["stop_below"],
        stop_when_solved=flags["stop_when_solved"],
        sampler_seed=flags["sampler_seed"],
        sweep_file=flags["sweep_file"],
        given=flags_given(ctx),
    )


def flags_given(ctx: typer.Context) -> set[str]:
    """The parameters typed on the command line (not left at their defaults): what overrides ``-f``."""
    return {
        name
        for name in ctx.params
        if (source := ctx.get_parameter_source(name)) is not None and source.name == "COMMANDLINE"
    }


def _named_by_flag(error: InvalidSpec, fields: dict[str, Any]) -> InvalidSpec:
    field, _, part = error.field.partition(".")
    message = _with_value(error, fields)
    if part and not part.isdigit():  # a sampled request's key: --lr: low: ...
        message = f"{part}: {message}"
    return InvalidSpec(_SPEC_FIELD_TO_FLAG.get(field, field), message)


def _flag_errors(parse: Any, values: list[str]) -> Any:
    try:
        return parse(values)
    except InvalidSpec as error:
        raise InvalidSpec(f"--{error.field}", error.message) from None


def _with_value(error: InvalidSpec, fields: dict[str, Any]) -> str:
    """Add the offending value to pydantic's message ("Input should be ..." alone does not say which)."""
    if "(got " in error.message:
        return error.message
    field, _, index = error.field.partition(".")
    value = fields.get(field)
    if index.isdigit() and isinstance(value, list) and int(index) < len(value):
        if repr(value[int(index)]) in error.message:
            return error.message
        return f"{error.message} {got(value[int(index)])}"
    if field in fields and not isinstance(value, list) and error.message.startswith("Input"):
        return f"{error.message} {got(value)}"
    return error.message
