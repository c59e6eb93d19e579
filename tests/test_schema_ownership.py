"""Reads never write, and the schema has one owner (issue 10, section 2).

``xorjobs db upgrade`` is the one command that migrates a server store; the API and the workers refuse to
start on a store that is not at the head revision; reads on a missing store say so and create nothing;
only the embedded default (``xorjobs run``, an in-process ``submit``) creates its own SQLite store.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import make_url

from tests.services import XORJOBS, clean_env
from xorjobs.cli import main
from xorjobs.settings import get_settings
from xorjobs.store.engine import get_engine
from xorjobs.store.schema import current_revision, head_revision, upgrade
from xorjobs.store.tables import Base

READ_COMMANDS = [
    ["status"],
    ["results"],
    ["sweeps"],
    ["show", "job-0123456789abcdef"],
    ["costs", "job-0123456789abcdef"],
    ["export"],
    ["plot"],
    ["compare", "sw-aaaaaaaaaaaa", "sw-bbbbbbbbbbbb"],
]
OLDER_REVISION = "0000_an_older_xorjobs"


def run_cli(args: list[str], cwd: Path, timeout: float = 120, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [XORJOBS, *args], cwd=cwd, env=clean_env(**env), capture_output=True, text=True, timeout=timeout
    )


def files_under(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*"))


def table_names(url: str) -> set[str]:
    with get_engine(url).connect() as connection:
        return set(sa.inspect(connection).get_table_names())


def set_revision(url: str, revision: str) -> None:
    """A store last upgraded by another xorjobs: its schema's revision is not this one's head."""
    with get_engine(url).begin() as connection:
        connection.execute(sa.text("UPDATE alembic_version SET version_num = :r"), {"r": revision})


# --- Reads on a missing store -----------------------------------------------------------------------


@pytest.mark.parametrize("command", READ_COMMANDS, ids=lambda command: command[0])
def test_a_read_in_an_empty_folder_exits_3_with_one_line_and_creates_nothing(
    command: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("XORJOBS_HOME", raising=False)  # the default home: ./.xorjobs
    monkeypatch.setattr(sys, "argv", ["xorjobs", *command])
    get_settings.cache_clear()
    with pytest.raises(SystemExit) as exited:
        main()
    captured = capsys.readouterr()
    assert exited.value.code == 3, captured.err
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "there is no store at sqlite:///" in lines[0], captured.err
    assert "xorjobs submit" in lines[0]  # says what creates one
    assert captured.out == ""
    assert files_under(tmp_path) == []  # no .xorjobs folder, no database file


def test_a_read_through_the_real_executable_creates_no_file(tmp_path: Path) -> None:
    result = run_cli(["status"], tmp_path)
    assert result.returncode == 3 and "there is no store at" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert files_under(tmp_path) == []


def test_a_named_sqlite_store_that_does_not_exist_is_not_created_by_a_read_or_a_submit(
    tmp_path: Path,
) -> None:
    store = tmp_path / "elsewhere" / "store.db"
    for command in (["sweeps"], ["submit", "--variant", "nn", "--steps", "10"]):
        result = run_cli(command, tmp_path, XORJOBS_DATABASE_URL=f"sqlite:///{store}")
        assert result.returncode == 3, result.stderr
        assert "xorjobs db upgrade" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert files_under(tmp_path) == []


def test_reads_and_an_in_process_submit_never_migrate_a_server_store(
    postgres_url: str, tmp_path: Path
) -> None:
    """A Postgres database without the schema: reads and an in-process submit report it (password
    masked) and leave the database as it was; only `xorjobs db upgrade` creates the tables."""
    with_password = make_url(postgres_url).set(password="hunter2").render_as_string(hide_password=False)
    for command in (["status"], ["results", "--json"], ["submit", "--variant", "nn", "--steps", "10"]):
        result = run_cli(command, tmp_path, XORJOBS_DATABASE_URL=with_password)
        assert result.returncode == 3, result.stderr
        line = result.stderr.strip()
        assert len(line.splitlines()) == 1 and "there is no store at postgresql" in line, line
        assert "hunter2" not in line and "***" in line
        assert "xorjobs db upgrade" in line
    assert table_names(postgres_url) == set()
    assert files_under(tmp_path) == []  # nor a local SQLite file instead
    upgraded = run_cli(["db", "upgrade"], tmp_path, XORJOBS_DATABASE_URL=with_password)
    assert upgraded.returncode == 0, upgraded.stderr
    assert {"sweeps", "jobs", "cost_curves", "alembic_version"} <= table_names(postgres_url)


def test_a_read_on_a_store_behind_head_names_the_upgrade_and_migrates_nothing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    upgrade(url)
    set_revision(url, OLDER_REVISION)
    result = run_cli(["sweeps"], tmp_path, XORJOBS_DATABASE_URL=url)
    assert result.returncode == 4, result.stderr
    line = result.stderr.strip()
    assert len(line.splitlines()) == 1 and OLDER_REVISION in line and "`xorjobs db upgrade`" in line
    assert current_revision(url) == OLDER_REVISION


# --- The API and the workers check, never migrate ------------------------------------------------------


@pytest.mark.parametrize("state", ["no schema", "older revision"])
@pytest.mark.parametrize(
    "server", [["api", "--port", "1"], ["worker", "--queue", "cpu"]], ids=["api", "worker"]
)
def test_the_api_and_workers_refuse_a_store_not_at_head(
    server: list[str], state: str, database_url: str, tmp_path: Path
) -> None:
    if state == "older revision":
        upgrade(database_url)
        set_revision(database_url, OLDER_REVISION)
    result = run_cli(server, tmp_path, timeout=90, XORJOBS_DATABASE_URL=database_url)
    assert result.returncode == 4, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "`xorjobs db upgrade`" in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    if state == "older revision":
        assert current_revision(database_url) == OLDER_REVISION  # left as it was
    elif database_url.startswith("sqlite"):
        assert not (tmp_path / "store.db").exists()  # not even an empty file
    else:
        assert table_names(database_url) == set()


def test_a_missing_embedded_store_stops_the_api_and_creates_nothing(tmp_path: Path) -> None:
    result = run_cli(["api", "--port", "1"], tmp_path, timeout=90)
    assert result.returncode == 4 and "`xorjobs db upgrade`" in result.stderr, result.stderr
    assert files_under(tmp_path) == []


# --- The embedded default keeps zero steps ----------------------------------------------------------------


def test_run_in_an_empty_folder_creates_its_store_and_trains(tmp_path: Path) -> None:
    result = run_cli(["run", "--variant", "nn", "--steps", "50", "--json"], tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr
    assert [job["state"] for job in json.loads(result.stdout)["jobs"]] == ["succeeded"]
    store = f"sqlite:///{tmp_path / '.xorjobs' / 'xorjobs.db'}"
    assert current_revision(store) == head_revision()
    status = run_cli(["status", "--json"], tmp_path)  # and the reads find it
    assert status.returncode == 0 and json.loads(status.stdout)["counts"]["succeeded"] == 1


# --- Migrations and tables cannot drift apart ---------------------------------------------------------------


def _differences(url: str, metadata: sa.MetaData) -> list[object]:
    with get_engine(url).connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, metadata))


def test_the_migrations_build_exactly_the_tables_of_tables_py(database_url: str) -> None:
    """`alembic check`, as a test: autogenerate finds nothing to add on a freshly upgraded store."""
    upgrade(database_url)
    assert _differences(database_url, Base.metadata) == []
    # The comparison can fail: a column the migrations lack is found.
    drifted = sa.MetaData()
    for table in Base.metadata.tables.values():
        table.to_metadata(drifted)
    drifted.tables["jobs"].append_column(sa.Column("not_migrated", sa.Integer))
    assert any("not_migrated" in str(difference) for difference in _differences(database_url, drifted))
