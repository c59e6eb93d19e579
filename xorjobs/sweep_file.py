"""Sweep files (issue 12 §1): a whole sweep in a YAML (or TOML, or JSON) document.

A document's keys are ``SweepSpec``'s fields (``variants``, ``seeds``, ``lrs``, ``steps``, ``log_every``,
``device``, ``name``, ``stop_below``, ``stop_when_solved``, ``sampler_seed``), with the same values the API
takes as JSON: ``POST /sweeps`` accepts the same document, sampled forms and seed ranges included. Errors are
``InvalidSpec`` naming the key, and the line where the parser gives one (YAML does; ``tomllib`` does
only for syntax errors). Nothing here touches the store, so a bad file writes nothing.

Used by ``submit -f``/``run -f`` (``xorjobs.cli.sweep_options``), by ``xorjobs spec`` (``document_of``)
and by the Python client.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import sys
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.composer import ComposerError

from xorjobs.errors import InvalidSpec, got
from xorjobs.sampling import has_sample
from xorjobs.spec import SweepSpec, validate_spec

STDIN = "-"
"""``-f -`` reads the document from standard input."""

DOCUMENT_KEYS = tuple(name for name in SweepSpec.model_fields if name != "sampling")
"""The keys a user writes (``sampling`` is the record a stored spec carries, read back as well)."""

_FLAG_NAMES = {"variant": "variants", "seed": "seeds", "lr": "lrs", "log-every": "log_every"}
"""A flag's name used as a key is a likely slip: the message names the key meant."""


class _Loader(yaml.SafeLoader):  # type: ignore[misc]  # PyYAML ships no types
    """PyYAML with YAML 1.2's plain scalars: ``1e-3`` is a number (YAML 1.1 makes it a string), ``010`` is
    ten (not octal eight), ``1_000`` and ``0x10`` are text (the flags' one number rule: ASCII digits), only
    ``true``/``false`` are booleans (not ``yes``/``no``/``on``/``off``) and dates stay text (a name like
    ``2026-12-01``)."""

    def compose_node(self, parent: yaml.Node | None, index: object) -> yaml.Node | None:
        """Aliases (``*name``) are refused: nine lines of aliases make a list of 9**9 items, which the
        line walk and the error's value text then visit one by one (it ran for minutes)."""
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            raise ComposerError(None, None, "an alias (*name) is not allowed in a sweep file", mark)
        return super().compose_node(parent, index)


_Loader.yaml_implicit_resolvers = {}
for _tag, _pattern, _first in (
    ("bool", r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
    ("int", r"^[-+]?[0-9]+$", "-+0123456789"),
    (
        "float",
        r"^(?:[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$",
        "-+0123456789.",
    ),
    ("null", r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
):
    _Loader.add_implicit_resolver(f"tag:yaml.org,2002:{_tag}", re.compile(_pattern), list(_first))


class _Dumper(yaml.SafeDumper):  # type: ignore[misc]  # PyYAML ships no types
    """Quotes a string that either YAML 1.1 (PyYAML's own rules) or the sweep file's YAML 1.2 numbers
    would read as something else: PyYAML left ``1e3`` bare, which ``_Loader`` reads as 1000.0."""


_Dumper.yaml_implicit_resolvers = {
    first: [
        *yaml.SafeDumper.yaml_implicit_resolvers.get(first, []),
        *_Loader.yaml_implicit_resolvers.get(first, []),
    ]
    for first in {*yaml.SafeDumper.yaml_implicit_resolvers, *_Loader.yaml_implicit_resolvers}
}
_Loader.add_constructor("tag:yaml.org,2002:int", lambda loader, node: int(loader.construct_scalar(node)))


@dataclass(frozen=True)
class SweepDocument:
    """A sweep document as read: its fields, where it came from, and the line of each key (``lrs.low``)."""

    fields: dict[str, Any]
    source: str = ""
    lines: dict[str, int] = field(default_factory=dict)


def load_sweep_document(path: str | os.PathLike[str]) -> SweepDocument:
    """Read a sweep file: ``.toml`` as TOML, ``.json`` as JSON, anything else (``-``: stdin, a pipe such as
    ``<(xorjobs spec ID)``) as YAML, which reads JSON too."""
    name = os.fspath(path)
    source = "stdin" if name == STDIN else name
    try:
        text = sys.stdin.read() if name == STDIN else Path(name).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
        raise InvalidSpec(source, f"cannot read the sweep file: {reason}") from None
    suffix = Path(name).suffix.lower()
    kind = "toml" if suffix == ".toml" else "json" if suffix == ".json" else "yaml"
    return parse_sweep_text(text, source, kind)


def parse_sweep_text(text: str, source: str = "", kind: str = "yaml") -> SweepDocument:
    """Parse a document's text (``kind``: yaml, toml or json) into its fields and key lines."""
    lines: dict[str, int] = {}
    try:
        if kind == "toml":
            fields: object = tomllib.loads(text)
        elif kind == "json":
            fields = json.loads(text, object_pairs_hook=_unique_keys)
        else:
            node = yaml.compose(text, Loader=_Loader)
            if node is None:
                raise InvalidSpec(source or "sweep file", _EMPTY)
            _collect_lines(node, "", lines, source)
            fields = yaml.load(text, Loader=_Loader)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f"{source} line {mark.line + 1}" if mark is not None else source
        raise InvalidSpec(where or "sweep file", f"not valid YAML: {error.problem or error}") from None
    except (yaml.YAMLError, tomllib.TOMLDecodeError, json.JSONDecodeError, ValueError) as error:
        raise InvalidSpec(source or "sweep file", f"not valid {kind.upper()}: {error}") from None
    except RecursionError:
        # Each parser recurses per nesting level (thousands of "[" are a RecursionError traceback).
        raise InvalidSpec(source or "sweep file", f"not valid {kind.upper()}: nested too deeply") from None
    if kind == "toml" and not fields and not _TOML_CONTENT.search(text):
        raise InvalidSpec(source or "sweep file", _EMPTY)
    if not isinstance(fields, dict):
        kind_of = "null" if fields is None else type(fields).__name__
        raise InvalidSpec(
            source or "sweep file",
            f"a sweep file is a mapping of keys ({', '.join(DOCUMENT_KEYS)}), not a {kind_of}",
        )
    for key in fields:
        if not isinstance(key, str):
            where = f"{source} line {lines[str(key)]}" if str(key) in lines else source or "sweep file"
            raise InvalidSpec(where, f"the key {key!r} is not text")
    return SweepDocument(fields, source, lines)


_EMPTY = "the sweep file is empty (write {} to submit every default)"
"""An empty document is a slip (``-f <(xorjobs spec ID)`` whose command failed printed nothing), not a
request for the default sweep of 3 x 10001 steps."""

_TOML_CONTENT = re.compile(r"^[ \t]*[^#\s]", re.MULTILINE)
"""A TOML line that is neither blank nor a comment."""


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """JSON objects keep the last of two equal keys; a sweep file refuses them, as its YAML and TOML do."""
    fields: dict[str, Any] = {}
    for key, value in pairs:
        if key in fields:
            raise ValueError(f"the key {key!r} is given twice")
        fields[key] = value
    return fields


def _collect_lines(node: yaml.Node, prefix: str, lines: dict[str, int], source: str) -> None:
    """Record the line of every key and list item; a key given twice is refused (YAML would keep the
    last one silently)."""
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            path = f"{prefix}{key_node.value}"
            if path in lines:
                raise InvalidSpec(
                    f"{path} ({source} line {key_node.start_mark.line + 1})",
                    f"given twice (first on line {lines[path]})",
                )
            lines[path] = key_node.start_mark.line + 1
            _collect_lines(value_node, f"{path}.", lines, source)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines[f"{prefix}{index}"] = item.start_mark.line + 1
            _collect_lines(item, f"{prefix}{index}.", lines, source)


def spec_from_document(
    document: SweepDocument | Mapping[str, Any], overrides: Mapping[str, Any] | None = None
) -> SweepSpec:
    """The validated sweep of a document, each key of ``overrides`` replacing the document's (a flag given
    beside ``-f``); sampled lrs/seeds are drawn here. An error names the key, with its line when the
    key came from a file; an overridden key is named plainly, for the caller to name its flag."""
    doc = document if isinstance(document, SweepDocument) else SweepDocument(dict(document))
    given = dict(overrides or {})
    fields = {**doc.fields, **given}
    if has_sample(doc.fields) and not has_sample(fields) and "sampler_seed" not in given:
        fields.pop("sampler_seed", None)  # the flags replaced every sampled key: the file's seed is moot
    try:
        return validate_spec(fields)
    except InvalidSpec as error:
        root = error.field.split(".")[0]
        if root in given:
            raise
        message = _unknown_key_message(root) if root not in SweepSpec.model_fields else error.message
        if root in SweepSpec.model_fields and message.startswith("Input should") and "(got " not in message:
            found, value = _value_at(fields, error.field)
            message = f"{message} {got(value)}" if found else message
        line = doc.lines.get(error.field) or doc.lines.get(root)
        where = f"{doc.source} line {line}" if line else doc.source
        raise InvalidSpec(f"{error.field} ({where})" if where else error.field, message) from None


def _unknown_key_message(key: str) -> str:
    close = difflib.get_close_matches(key, DOCUMENT_KEYS, 1)
    meant = _FLAG_NAMES.get(key) or (close[0] if close else None)
    hint = f"; did you mean {meant}?" if meant else ""
    return f"not a sweep key{hint} (the keys: {', '.join(DOCUMENT_KEYS)})"


def _value_at(fields: Mapping[str, Any], path: str) -> tuple[bool, Any]:
    value: Any = fields
    for part in path.split("."):
        if isinstance(value, Mapping) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return False, None
    return True, value


def document_of(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The document that submits a stored sweep again with the same jobs (``xorjobs spec``): its fields,
    each sampled one as its request with the sampler seed it was drawn with (the draw is deterministic),
    and seeds that count up by one (``seeds: {first: 1, last: 1000}``, ``--seed 1-1000``) as that range."""
    document = {key: value for key, value in spec.items() if key != "sampling" and value is not None}
    sampling = spec.get("sampling") or {}
    for key in ("lrs", "seeds"):
        if sampling.get(key) is not None:
            document[key] = sampling[key]
    seeds = document.get("seeds")
    if isinstance(seeds, list) and _counts_up(seeds):
        document["seeds"] = {"first": seeds[0], "last": seeds[-1]}
    return document


SHORTEST_PRINTED_RANGE = 4
"""``xorjobs spec`` prints consecutive seeds as a range from this many on (``[1, 2, 3]`` reads as well)."""


def _counts_up(seeds: list[Any]) -> bool:
    return (
        len(seeds) >= SHORTEST_PRINTED_RANGE
        and all(type(seed) is int for seed in seeds)
        and seeds == list(range(seeds[0], seeds[0] + len(seeds)))
    )


def dump_document(document: Mapping[str, Any], comment: str = "") -> str:
    """A document as YAML that ``load_sweep_document`` reads back to the same values (floats as Python's
    shortest repr, which round-trips)."""
    header = "".join(f"# {line}\n" for line in comment.splitlines())
    body: str = yaml.dump(dict(document), Dumper=_Dumper, sort_keys=False, default_flow_style=None, width=100)
    return header + body
