"""An import-linter contract type for our layering rule: forbidden imports *at import time*.

import-linter's ``forbidden`` contract counts every import statement, including the ones inside a
function body, but the layers here are allowed to reach upwards lazily (the CLI's core imports the
worker inside the command that starts one; the API imports ``matplotlib`` only when it draws). What
must not happen is that *importing* a lower layer loads torch, FastAPI or an upper layer. So this
contract first drops every import edge whose statements all sit inside a function body (imports under
``if TYPE_CHECKING`` are dropped by the ``exclude_type_checking_imports`` setting), then checks the
remaining graph exactly as ``forbidden`` does, indirect chains included.

``source_modules`` and ``forbidden_modules`` are packages (a package with everything in it);
``except_modules`` carves packages out of the sources: the core is ``xorjobs`` except its
``api``/``cli``/``models``/``worker`` layers. Configured in pyproject.toml; run by
tests/test_layering.py (or ``lint-imports`` from the repository root).
"""

from __future__ import annotations

import ast
import importlib.util
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any, cast

from grimp import ImportGraph
from importlinter.contracts.forbidden import ForbiddenContract
from importlinter.domain import fields
from importlinter.domain.contract import ContractCheck
from importlinter.domain.imports import ModuleExpression


def _within(module: str, packages: set[str]) -> bool:
    return any(module == package or module.startswith(package + ".") for package in packages)


@cache
def _source_file(module: str) -> Path | None:
    """The file of an internal module, found from its top-level package's folder (without importing
    the module: importing is what this contract is about)."""
    top, *rest = module.split(".")
    spec = importlib.util.find_spec(top)
    if spec is None or spec.origin is None:
        return None
    folder = Path(spec.origin).parent.joinpath(*rest)
    for candidate in (folder / "__init__.py", folder.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


@cache
def _deferred_import_lines(path: Path) -> frozenset[int]:
    """Line numbers of the import statements inside function bodies: they run when called, not when
    the module is imported. (A class body runs at import time, so its imports count.)"""
    lines: set[int] = set()

    def visit(node: ast.AST, deferred: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = deferred or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
            if deferred and isinstance(child, ast.Import | ast.ImportFrom):
                lines.add(child.lineno)
            visit(child, inner)

    visit(ast.parse(path.read_text(encoding="utf-8")), False)
    return frozenset(lines)


def drop_deferred_imports(graph: ImportGraph, root_packages: set[str]) -> None:
    """Remove every import edge of the ``root_packages`` all of whose statements are inside function
    bodies (external packages are leaves of the graph: grimp does not scan them)."""
    for importer in sorted(m for m in graph.modules if _within(m, root_packages)):
        path = _source_file(importer)
        if path is None:
            raise FileNotFoundError(f"no source file found for {importer}")
        deferred = _deferred_import_lines(path)
        for imported in graph.find_modules_directly_imported_by(importer):
            details = graph.get_import_details(importer=importer, imported=imported)
            if details and all(detail["line_number"] in deferred for detail in details):
                graph.remove_import(importer=importer, imported=imported)


def _names(parsed: object) -> set[str]:
    """A contract's field as parsed (a set of ``ModuleExpression``, or ``None`` when left out)."""
    return {expression.expression for expression in cast("Iterable[ModuleExpression]", parsed or ())}


class ForbiddenAtImportContract(ForbiddenContract):
    """``forbidden``, counting only the imports that run when a module is imported."""

    type_name = "forbidden_at_import"

    except_modules = fields.SetField(subfield=fields.ModuleExpressionField(), required=False)

    def check(self, graph: ImportGraph, verbose: bool) -> ContractCheck:
        drop_deferred_imports(graph, set(self.session_options["root_packages"]))
        packages, carved = _names(self.source_modules), _names(self.except_modules)
        forbidden = _names(self.forbidden_modules)
        sources = {m for m in graph.modules if _within(m, packages) and not _within(m, carved)}
        # Whole packages, named module by module (an external package is one node in the graph).
        targets = {m for m in graph.modules if _within(m, forbidden)} | forbidden
        self.source_modules: Any = {ModuleExpression(name) for name in sources}
        self.forbidden_modules: Any = {ModuleExpression(name) for name in targets}
        self.as_packages: Any = False
        return super().check(graph, verbose)
