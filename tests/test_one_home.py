"""Each shared constant is written out once (xorjobs/defaults.py); the others read it from there."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from xorjobs.api.main import create_app
from xorjobs.defaults import JOB_STATES, SWEEP_ID_PREFIX, TERMINAL_STATES
from xorjobs.settings import Settings
from xorjobs.store.schema import upgrade

REPO = Path(__file__).resolve().parents[1]
SOURCES = sorted(
    {
        path.resolve()
        for folder in ("xorjobs", "api", "worker", "models")
        for path in (REPO / folder).rglob("*")
        if path.suffix in {".py", ".js"} and "migrations" not in path.parts
    }
)
HOME = REPO / "xorjobs" / "defaults.py"
EXEMPT = {HOME, REPO / "xorjobs" / "testing" / "seed_scripts.py"}
"""The home itself, and the seed's scripts, which keep the seed's own literals (they are the yardstick)."""

# What a second copy of each constant looks like in source.
COPIES = {
    "the terminal states": re.compile(r"""["']succeeded["'],\s*["']failed["'],\s*["']cancelled["']"""),
    "the sweep id prefix": re.compile(r"""["']sw-["']"""),
    "the error cap": re.compile(r"\[:\s*4_?000\]"),
    "the ids per statement": re.compile(r"range\(0, len\([^)]*\), 500\)"),
    "the default steps": re.compile(r"\b10_?001\b(?!\s*steps)"),
}


@pytest.mark.parametrize("what", COPIES)
def test_no_second_copy_of(what: str) -> None:
    assert HOME in SOURCES
    copies = [
        f"{path.relative_to(REPO)}:{number}"
        for path in SOURCES
        if path not in EXEMPT
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if COPIES[what].search(line.split("#")[0] if path.suffix == ".py" else line.split("//")[0])
    ]
    assert copies == [], f"{what} is written out again (use xorjobs/defaults.py): {copies}"


def test_the_dashboard_reads_the_states_and_the_prefix_from_the_page(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    upgrade(settings.resolved_database_url)
    with TestClient(create_app(settings)) as client:
        page = client.get("/").text
    assert f'data-job-states="{" ".join(JOB_STATES)}"' in page
    terminal = [state for state in JOB_STATES if state in TERMINAL_STATES]
    assert f'data-terminal-states="{" ".join(terminal)}"' in page
    assert f'data-sweep-id-prefix="{SWEEP_ID_PREFIX}"' in page
    script = (REPO / "api" / "static" / "dashboard.js").read_text()
    assert "dataset.jobStates" in script and "dataset.terminalStates" in script
