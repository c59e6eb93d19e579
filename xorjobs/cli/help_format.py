"""``--help`` in click's words: ``--steps INTEGER``, ``--wait`` (no value), not ``<str>`` and ``<bool>``.

typer 0.29 labels every option with its Python type (``<list[str]>``, ``<bool>`` even on flags that take
no value, ``<bool>`` on ``--help`` itself). The label comes from one method, so it is replaced here, once,
for every option and argument: flags show nothing, an explicit ``metavar`` wins, and other types take click's
upper-case names. If typer drops the method, its own labels show again; nothing breaks.
"""

from __future__ import annotations

from typing import Any

from typer import core

_CLICK_NAMES = {"str": "TEXT", "int": "INTEGER", "float": "FLOAT", "Path": "PATH", "bool": "BOOLEAN"}


def _click_style_type(option: Any, ctx: Any) -> str | None:
    if getattr(option, "is_flag", False) or getattr(option, "count", False):
        return None  # a flag takes no value
    if option.metavar is not None:
        return str(option.metavar)
    label = str(option.display_type(ctx)).removeprefix("<").removesuffix(">")
    if label.startswith("list[") and label.endswith("]"):
        label = label[len("list[") : -1]  # a repeatable option: each use takes one value
    return _CLICK_NAMES.get(label, label.upper())


def use_click_style_types() -> None:
    for parameter_class in (core.TyperOption, core.TyperArgument):
        if hasattr(parameter_class, "display_type_rich"):
            parameter_class.display_type_rich = _click_style_type  # type: ignore[method-assign,assignment]
