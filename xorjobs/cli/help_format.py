"""``--help`` in click's words: ``--steps INTEGER``, ``--wait`` (no value), not ``<str>`` and ``<bool>``.

typer 0.29 labels every option with its Python type (``<list[str]>``, ``<bool>`` even on flags that take
no value, ``<bool>`` on ``--help`` itself). The label comes from one method, so it is replaced here, once,
for every option and argument: flags show nothing, an explicit ``metavar`` wins, and other types take click's
upper-case names. If typer drops the method, its own labels show again; nothing breaks.
"""

from __future__ import annotations

from typing import Any

from typer import core, rich_utils

# typer 0.29 ships its own copy of click: its usage errors are these classes, not click's.
from typer._click.exceptions import BadOptionUsage, BadParameter, MissingParameter, NoSuchOption, UsageError

_CLICK_NAMES = {
    "str": "TEXT",
    "int": "INTEGER",
    "int range": "INTEGER",  # the range itself is printed beside it
    "float": "FLOAT",
    "Path": "PATH",
    "path": "PATH",
    "bool": "BOOLEAN",
}
OPTION_METAVARS = {
    "--by": "FIELDS",
    "--threshold": "COST",
    "--format": "csv|jsonl",
    "--job": "JOB_ID",
    "--key": "KEY",
    "--older-than": "AGE",
    "--host": "HOST",
    "--port": "PORT",
    "--loglevel": "LEVEL",
    "--limit": "N",
    "--concurrency": "N",
    "--output": "FILE",
}
"""What an option's value is, where its type alone would say TEXT (``--threshold TEXT`` is a number)."""


def _click_style_type(option: Any, ctx: Any) -> str | None:
    if getattr(option, "is_flag", False) or getattr(option, "count", False):
        return None  # a flag takes no value
    if option.metavar is not None:
        return str(option.metavar)
    for name in getattr(option, "opts", ()):
        if name in OPTION_METAVARS:
            return OPTION_METAVARS[name]
    label = str(option.display_type(ctx)).removeprefix("<").removesuffix(">")
    if label.startswith("list[") and label.endswith("]"):
        label = label[len("list[") : -1]  # a repeatable option: each use takes one value
    if "|" in label:
        return label  # the choices, as they are typed: cpu|gpu
    return _CLICK_NAMES.get(label, label.upper())


def _argument_name(argument: Any) -> str:
    """An argument as click writes it: ``JOB_ID`` (typer 0.29: ``job_id``, and ``{job_id}`` in usage)."""
    return str(argument.metavar or argument.name or "").upper()


def _argument_usage(argument: Any) -> str:
    name = _argument_name(argument)
    return (name if argument.required else f"[{name}]") + ("..." if argument.nargs != 1 else "")


def _reflowed_paragraphs(paragraphs: list[str], markup_mode: Any) -> str:
    """A docstring's later paragraphs as click prints them: each one reflowed to the terminal, its source
    line breaks dropped (typer 0.29 kept them, so a word wrapped at 80 columns in the source stood alone on
    a line of ``--help``). A paragraph starting with click's ``\\b`` keeps its lines, as in click."""
    return "\n\n".join(
        paragraph if paragraph.startswith("\b") else " ".join(paragraph.split("\n"))
        for paragraph in paragraphs
    )


def use_click_style_types() -> None:
    if hasattr(rich_utils, "_fix_linebreaks"):
        rich_utils._fix_linebreaks = _reflowed_paragraphs
    if hasattr(core.TyperOption, "display_type_rich"):
        core.TyperOption.display_type_rich = _click_style_type  # type: ignore[method-assign,assignment]
    argument = core.TyperArgument
    if hasattr(argument, "display_type_rich"):  # an argument's name says what it is; no TEXT beside it
        argument.display_type_rich = lambda self, ctx: None  # type: ignore[method-assign]
    if hasattr(argument, "_usage_display_name") and hasattr(argument, "display_name_raw"):
        argument._usage_display_name = _argument_usage  # type: ignore[method-assign,assignment]
        argument.display_name_raw = property(_argument_name)  # type: ignore[assignment,method-assign]


def usage_error_line(error: UsageError) -> str:
    """A usage error in the one style of every other error, ``FLAG: what is wrong`` (issue 13 §2: click
    said "Invalid value for '--port': ..." beside xorjobs' "--steps: ..."); an unknown option or command
    and a usage error with no parameter keep click's words, with where to look."""
    hint = f" (see `{error.ctx.command_path} --help`)" if error.ctx is not None else ""
    if isinstance(error, MissingParameter) and error.param is not None:
        return f"{_flag(error.param)}: is missing{hint}"
    if isinstance(error, BadParameter) and error.param is not None:
        return f"{_flag(error.param)}: {_plain(error.message)}"
    if isinstance(error, BadOptionUsage) and not isinstance(error, NoSuchOption):
        words = _plain(error.message).removeprefix(f"Option {error.option_name!r} ")
        return f"{error.option_name}: {words}"
    return f"{error.format_message()}{hint}"


def _flag(parameter: Any) -> str:
    """``--port``, the longest of an option's names; ``JOB_ID`` for an argument."""
    options = [str(name) for name in getattr(parameter, "opts", []) if str(name).startswith("-")]
    if options:
        return max(options, key=len)
    return _argument_name(parameter)


def _plain(message: str) -> str:
    """pydantic's and click's phrasing without their prefixes and final full stop."""
    return message.removeprefix("Value error, ").rstrip(".")
