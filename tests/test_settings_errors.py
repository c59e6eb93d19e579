"""Bad settings at the keyboard (issue 13 §1): every bad XORJOBS_* value is one line naming the variable
(exit 2, secrets masked), an unreachable store one line (exit 4), and a mistyped variable or a broken
``.env`` line a warning, for every command that reads the settings.

The CLI runs through its real entry point in this process (``run_main``), on the real SQLite file in
XORJOBS_HOME or the real Postgres server.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from tests.helpers import run_main
from tests.services import POSTGRES_SERVER_URL
from xorjobs.errors import InvalidSpec
from xorjobs.settings import MIN_LEASE_PER_HEARTBEAT, Settings, configuration_warnings
from xorjobs.store.engine import check_database_url, get_engine

Capsys = pytest.CaptureFixture[str]
MP = pytest.MonkeyPatch

SECRET = "hunter2-s3cret"
# Every command that opens the store or a service reads the settings first.
COMMANDS = [["sweeps"], ["db", "upgrade"], ["run", "--variant", "nn", "--steps", "10"], ["api"], ["worker"]]


def one_error_line(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if not line.startswith("warning: ")]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("nonsense://", "'nonsense' is not a supported store"),
        ("not a url", "cannot be parsed as a database URL"),
        (f"mysql://root:{SECRET}@db.example/jobs", "'mysql' is not a supported store"),
        (f"postgresql+psycopg2://u:{SECRET}@h/d", "the driver postgresql+psycopg2 is not supported"),
        ("sqlite+aiosqlite:///x.db", "the driver sqlite+aiosqlite is not supported"),
        (f"postgresql+psycopg://u:{SECRET}@h", "names no database"),
    ],
)
@pytest.mark.parametrize("command", COMMANDS, ids=lambda args: args[0])
def test_a_database_url_xorjobs_cannot_use_is_one_line_naming_it(
    url: str, says: str, command: list[str], monkeypatch: MP, capsys: Capsys
) -> None:
    monkeypatch.setenv("XORJOBS_DATABASE_URL", url)
    code, _, err = run_main(command, monkeypatch, capsys)
    line = one_error_line(err)
    assert code == 2, err
    assert line.startswith("error: XORJOBS_DATABASE_URL: ") and says in line, line
    assert "sqlite:///PATH or postgresql+psycopg://" in line  # says what is supported
    assert SECRET not in err


def test_a_settings_object_built_in_code_is_checked_where_the_engine_is_made() -> None:
    with pytest.raises(InvalidSpec, match="XORJOBS_DATABASE_URL: 'mysql' is not a supported store"):
        get_engine(f"mysql://root:{SECRET}@h/db")
    assert (
        check_database_url("postgresql://u@h/db").get_driver_name() == "psycopg"
    )  # SQLAlchemy 2.1's default


@pytest.mark.parametrize("command", [["sweeps"], ["db", "upgrade"], ["api"]], ids=lambda args: args[0])
def test_postgres_on_a_dead_port_is_unreachable_in_one_line_with_the_password_masked(
    command: list[str], monkeypatch: MP, capsys: Capsys
) -> None:
    monkeypatch.setenv("XORJOBS_DATABASE_URL", f"postgresql+psycopg://xj:{SECRET}@127.0.0.1:1/jobs")
    code, _, err = run_main(command, monkeypatch, capsys)
    line = one_error_line(err)
    assert code == 4, err
    assert line.startswith("error: cannot reach the store postgresql+psycopg://xj:***@127.0.0.1:1/jobs"), line
    assert SECRET not in err


@pytest.mark.postgres
@pytest.mark.parametrize("command", COMMANDS, ids=lambda args: args[0])
def test_a_missing_postgres_database_is_unreachable_in_one_line(
    postgres_url: str, command: list[str], monkeypatch: MP, capsys: Capsys
) -> None:
    missing = make_url(POSTGRES_SERVER_URL).set(database="xorjobs_no_such_database")
    monkeypatch.setenv("XORJOBS_DATABASE_URL", missing.render_as_string(hide_password=False))
    code, _, err = run_main(command, monkeypatch, capsys)
    line = one_error_line(err)
    assert code == 4, err
    assert 'database "xorjobs_no_such_database" does not exist' in line, line


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("XORJOBS_PACK_SIZE", "0", "greater than or equal to 1"),
        ("XORJOBS_PACK_SIZE", "-5", "greater than or equal to 1"),
        ("XORJOBS_PACK_SIZE", "abc", "a valid integer"),
        ("XORJOBS_LEASE_SECONDS", "0", "greater than 0"),
        ("XORJOBS_MAX_ATTEMPTS", "0", "greater than or equal to 1"),
        (
            "XORJOBS_HEARTBEAT_SECONDS",
            "60",
            f"more than 1/{MIN_LEASE_PER_HEARTBEAT:g} of XORJOBS_LEASE_SECONDS",
        ),
        ("XORJOBS_BROKER_URL", "garbage", "a URL without a scheme is not a supported broker"),
        (
            "XORJOBS_BROKER_URL",
            f"amqp://guest:{SECRET}@h//",
            "the scheme 'amqp://' is not a supported broker",
        ),
        ("XORJOBS_BROKER_URL", f"redis://u:{SECRET}@h:port/0", "cannot be parsed as a URL"),
        # An API URL httpx cannot use was exit 4 ("cannot reach the API at notaurl"): a typo, not an outage.
        ("XORJOBS_API_URL", "notaurl", "a URL without a scheme is not an API URL"),
        ("XORJOBS_API_URL", f"ftp://u:{SECRET}@h/", "the scheme 'ftp://' is not an API URL"),
        ("XORJOBS_API_URL", "http://", "names no host"),
    ],
)
@pytest.mark.parametrize("command", [["sweeps"], ["status"], ["run", "--variant", "nn", "--steps", "10"]])
def test_a_bad_setting_is_one_line_naming_it_even_for_a_read(
    variable: str, value: str, says: str, command: list[str], monkeypatch: MP, capsys: Capsys
) -> None:
    monkeypatch.setenv(variable, value)
    code, _, err = run_main(command, monkeypatch, capsys)
    line = one_error_line(err)
    assert code == 2, err
    assert line.startswith(f"error: {variable}: ") and says in line, line
    assert SECRET not in err


def test_a_lease_too_short_for_the_default_heartbeat_is_refused_naming_both(
    monkeypatch: MP, capsys: Capsys
) -> None:
    monkeypatch.setenv("XORJOBS_LEASE_SECONDS", "10")  # the default heartbeat is 5 s
    code, _, err = run_main(["sweeps"], monkeypatch, capsys)
    line = one_error_line(err)
    assert code == 2 and "XORJOBS_HEARTBEAT_SECONDS" in line and "XORJOBS_LEASE_SECONDS (10 s)" in line, line


def test_the_api_token_is_never_repeated(monkeypatch: MP, capsys: Capsys) -> None:
    monkeypatch.setenv("XORJOBS_API_TOKEN", f"{SECRET}\n")
    monkeypatch.setenv("XORJOBS_API_URL", "http://127.0.0.1:1")
    code, _, err = run_main(["sweeps"], monkeypatch, capsys)
    line = one_error_line(err)
    assert code == 2 and line.startswith("error: XORJOBS_API_TOKEN: "), line
    assert SECRET not in err


def test_a_mistyped_variable_is_a_warning_with_a_suggestion_and_the_command_runs(
    monkeypatch: MP, capsys: Capsys
) -> None:
    monkeypatch.setenv("XORJOBS_PACKSIZE", "3")
    monkeypatch.setenv("XORJOBS_TEST_ANYTHING", "1")  # the test suite's own variables are not settings
    code, _, err = run_main(["run", "--variant", "nn", "--steps", "10"], monkeypatch, capsys)
    assert code == 0, err
    warnings = [line for line in err.splitlines() if line.startswith("warning: XORJOBS_")]
    assert warnings == [
        "warning: XORJOBS_PACKSIZE is not an xorjobs setting and is ignored; did you mean XORJOBS_PACK_SIZE?"
    ], err


def test_a_broken_env_line_and_a_mistyped_name_in_it_are_warned_about(
    tmp_path: Path, monkeypatch: MP, capsys: Capsys
) -> None:
    # The tests run in tmp_path (conftest), so this is the .env the settings read.
    Path(".env").write_text(
        "XORJOBS_PACK_SIZE=4\nthis line is not an assignment\nXORJOBS_LEASSE_SECONDS=30\n"
    )
    code, _, err = run_main(["sweeps"], monkeypatch, capsys)
    assert code == 3, err  # no store yet: the command itself ran
    assert "warning: .env line 2: cannot be parsed as NAME=value; ignored" in err.splitlines(), err
    assert (
        "warning: XORJOBS_LEASSE_SECONDS (in .env) is not an xorjobs setting and is ignored; "
        "did you mean XORJOBS_LEASE_SECONDS?"
    ) in err.splitlines(), err
    assert "python-dotenv" not in err  # its own line would say the same again
    assert Settings().pack_size == 4  # the good lines still count


def test_nothing_is_warned_about_for_known_settings(tmp_path: Path) -> None:
    environ = {
        "XORJOBS_PACK_SIZE": "8",
        "XORJOBS_DATABASE_URL": "sqlite://",
        "XORJOBS_FAULT": "x",
        "PATH": "/",
    }
    assert configuration_warnings(environ, tmp_path / "no.env") == []
