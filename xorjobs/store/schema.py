"""The store's schema: Alembic migrations, applied by ``xorjobs db upgrade`` and checked by everyone else.

One owner per store (issue 10, section 2). A server store (Postgres, or any XORJOBS_DATABASE_URL) is
migrated only by ``xorjobs db upgrade`` (the compose ``migrate`` service): the API and the workers check at
start that it is at the head revision and refuse to start otherwise, and reads never create or migrate
anything. The one exception is the embedded default, the SQLite file in XORJOBS_HOME: it belongs to the
user who runs ``xorjobs run`` or an in-process ``submit`` there, so those create or upgrade it themselves
(``ensure_schema``), keeping the embedded mode at zero steps.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from xorjobs.errors import NoStore, StoreNotAtHead, Unreachable
from xorjobs.store.engine import describe, get_engine

_MIGRATIONS = Path(__file__).with_name("migrations")
UPGRADE_COMMAND = "xorjobs db upgrade"
_at_head: set[str] = set()
"""URLs this process found (or made) at the head revision: each is checked once per process."""


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


@lru_cache(maxsize=1)
def _head() -> str | None:
    # Reading the revision files once per process: every store shares the same migrations.
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def head_revision(url: str | None = None) -> str | None:
    """The newest revision of the migrations this xorjobs ships (the same for every store)."""
    return _head()


def current_revision(url: str) -> str | None:
    """The store's revision, or None when it has no schema. Connects, so a SQLite file may be created:
    callers that must not create one ask ``stored_revision``."""
    with _connection_errors(url), get_engine(url).connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def stored_revision(url: str) -> str | None:
    """The store's revision without creating anything: None where there is no store at ``url``.

    A SQLite file that does not exist is not opened (connecting would create it). A database without
    the schema is no store either; a Postgres database that does not exist is Unreachable, which says so.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database not in ("", ":memory:") and not Path(database).is_file():
            return None
    return current_revision(url)


def check_readable(url: str, when_missing: str) -> None:
    """Raise unless the store exists at the head revision; never creates or migrates anything.

    No store: NoStore (exit 3), with ``when_missing`` saying what creates one. Behind (or ahead of)
    this xorjobs: StoreNotAtHead (exit 4), naming ``xorjobs db upgrade``.
    """
    if url in _at_head:
        return
    revision = stored_revision(url)
    if revision is None:
        raise NoStore(f"there is no store at {describe(url)}: {when_missing}")
    _require_head(url, revision)


def check_servable(url: str) -> None:
    """For the API and the workers at start: refuse (StoreNotAtHead, exit 4) unless the store is at head.

    They never migrate: several of them start at once on many machines, and a schema change belongs to
    one deliberate step (``xorjobs db upgrade``), run before them.
    """
    if url in _at_head:
        return
    revision = stored_revision(url)
    if revision is None:
        raise StoreNotAtHead(
            f"the store {describe(url)} has no xorjobs schema: run `{UPGRADE_COMMAND}` first"
        )
    _require_head(url, revision)


def _require_head(url: str, revision: str) -> None:
    head = head_revision()
    if revision != head:
        raise StoreNotAtHead(
            f"the store {describe(url)} is at schema revision {revision} and this xorjobs needs "
            f"{head}: run `{UPGRADE_COMMAND}`"
        )
    _at_head.add(url)


def upgrade(url: str) -> None:
    """Bring the schema to the newest revision; safe when several processes start at once.

    The upgrade runs inside one write transaction that first takes a lock (SQLite: BEGIN IMMEDIATE;
    Postgres: an advisory lock), so a second process waits and then finds nothing to do.
    """
    engine = get_engine(url).execution_options(xorjobs_write=True)
    with _connection_errors(url), engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(7270917)"))
        config = alembic_config(url)
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
    _at_head.add(url)


def ensure_schema(url: str) -> None:
    """Create or upgrade a store this process owns (the embedded default, tests): once per process,
    and only when it is behind (a cheap check otherwise). Servers never call this: see the docstring."""
    if url in _at_head:
        return
    if current_revision(url) != head_revision():
        upgrade(url)
    _at_head.add(url)


@contextmanager
def _connection_errors(url: str) -> Iterator[None]:
    """A store that cannot be reached is one line (exit 4), never a traceback."""
    try:
        yield
    except OperationalError as error:
        reason = " ".join(str(error.orig).split())  # psycopg's messages span lines
        if error.connection_invalidated or "connect" in reason.lower():
            raise Unreachable(f"cannot reach the store {describe(url)}: {reason}") from error
        raise
