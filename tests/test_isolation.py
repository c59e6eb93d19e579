"""The test suite itself holds wherever it runs: no developer's ``.env`` reaches a test, and the
"skip locally, fail in CI" rule reads ``CI`` as a boolean."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.ci import in_ci
from tests.services import clean_env
from xorjobs.settings import Settings, get_settings

REPO = Path(__file__).resolve().parents[1]
INVOCATION_DIR = Path.cwd()
"""Where pytest was started (read at import, before the fixtures move each test to its tmp_path)."""


@pytest.fixture
def developer_env_file() -> Iterator[Path]:
    """The README's ``cp .env.example .env`` in the folder pytest runs from; removed afterwards."""
    env_file = INVOCATION_DIR / ".env"
    if env_file.exists():
        pytest.skip(f"{env_file} is someone's own .env; this test does not overwrite it")
    env_file.write_text((REPO / ".env.example").read_text())
    try:
        yield env_file
    finally:
        env_file.unlink()


def test_a_dotenv_where_pytest_runs_reaches_no_test(developer_env_file: Path) -> None:
    assert "XORJOBS_API_URL=http://127.0.0.1:8000" in developer_env_file.read_text()
    # In this process: the settings a test builds, and the cached ones the CLI entry point uses.
    get_settings.cache_clear()
    assert Settings().api_url is None and Settings().api_token is None
    assert get_settings().api_url is None
    # In a command started the way the tests start them (it inherits the test's working directory).
    code = "from xorjobs.settings import get_settings; s = get_settings(); print(s.api_url, s.api_token)"
    result = subprocess.run(
        [sys.executable, "-c", code], env=clean_env(), capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.split() == ["None", "None"], result.stdout


def test_the_dotenv_is_read_where_a_user_runs_the_cli(developer_env_file: Path) -> None:
    """The guard above is the tests' working directory, not a change to Settings: run from the folder
    holding the .env, as a user does, the CLI still reads it."""
    code = "from xorjobs.settings import get_settings; print(get_settings().api_url)"
    result = subprocess.run(
        [sys.executable, "-c", code],
        env=clean_env(),
        cwd=developer_env_file.parent,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout.strip() == "http://127.0.0.1:8000"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, False),
        ("", False),
        ("false", False),
        ("False", False),
        ("0", False),
        ("no", False),
        ("true", True),
        ("TRUE", True),
        ("1", True),
        ("yes", True),
        (" on ", True),
    ],
)
def test_ci_is_read_as_a_boolean(value: str | None, expected: bool) -> None:
    environ = {} if value is None else {"CI": value}
    assert in_ci(environ) is expected
