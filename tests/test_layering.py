"""The layering is enforced: the core imports neither torch, nor the web stack, nor a layer above it;
the API imports neither torch nor the training side (issue 10 §7).

The contracts live in pyproject.toml (``[tool.importlinter]``) and are checked by import-linter, over the
whole import graph, indirect chains included, counting only the imports that run when a module is
imported (tests/import_contracts.py). A fresh interpreter then checks the same thing at run time.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(cwd: Path, extra_path: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    if extra_path is not None:
        env["PYTHONPATH"] = f"{extra_path}{os.pathsep}{REPO}"
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def test_the_layering_contracts_hold() -> None:
    result = lint_imports(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 2 kept, 0 broken." in result.stdout


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")


def test_the_contract_counts_exactly_the_imports_that_run_at_import_time(tmp_path: Path) -> None:
    """A throwaway package through the same contract type: module-level imports, class bodies and
    indirect chains break it; imports inside functions and under TYPE_CHECKING do not."""
    write(
        tmp_path,
        {
            "pyproject.toml": """
                [tool.importlinter]
                root_packages = ["pkg"]
                include_external_packages = true
                exclude_type_checking_imports = true
                contract_types = ["forbidden_at_import: tests.import_contracts.ForbiddenAtImportContract"]

                [[tool.importlinter.contracts]]
                name = "core stays low"
                type = "forbidden_at_import"
                source_modules = ["pkg"]
                except_modules = ["pkg.upper"]
                forbidden_modules = ["pkg.upper", "json"]
            """,
            "pkg/__init__.py": "",
            "pkg/upper/__init__.py": "",
            "pkg/upper/tool.py": "import json\n",
            "pkg/lazy.py": """
                from typing import TYPE_CHECKING

                if TYPE_CHECKING:
                    from pkg.upper import tool

                def later():
                    import json
                    from pkg.upper import tool
                    return json, tool
            """,
            "pkg/eager.py": "from pkg.upper import tool\n",
            "pkg/in_class.py": """
                class Holder:
                    import json
            """,
            "pkg/via_eager.py": "import pkg.eager\n",
        },
    )
    result = lint_imports(tmp_path, extra_path=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    broken = {line.split()[0] for line in result.stdout.splitlines() if "is not allowed to import" in line}
    assert broken == {"pkg.eager", "pkg.in_class", "pkg.via_eager"}, result.stdout


def test_importing_the_api_and_the_core_loads_no_torch(tmp_path: Path) -> None:
    """At run time too: a fresh interpreter imports the API app and every core module."""
    core = sorted(
        f"xorjobs.{path.stem}" for path in (REPO / "xorjobs").glob("*.py") if path.stem != "__init__"
    ) + sorted(f"xorjobs.store.{path.stem}" for path in (REPO / "xorjobs" / "store").glob("*.py"))
    probe = (
        "import importlib, sys\n"
        f"for name in {['xorjobs.api.main', *core]!r}:\n"
        "    importlib.import_module(name)\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] == 'torch' or "
        "m.startswith(('xorjobs.worker', 'xorjobs.models')))\n"
        "assert not loaded, loaded\n"
    )
    env = {key: value for key, value in os.environ.items() if not key.startswith("XORJOBS_")}
    env["XORJOBS_HOME"] = str(tmp_path)
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
