"""Creating and upgrading the schema with Alembic, automatically or with ``xorjobs db upgrade``."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text

from xorjobs.store.engine import get_engine

_MIGRATIONS = Path(__file__).with_name("migrations")
_checked: set[str] = set()


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def head_revision(url: str) -> str | None:
    return ScriptDirectory.from_config(alembic_config(url)).get_current_head()


def current_revision(url: str) -> str | None:
    with get_engine(url).connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(url: str) -> None:
    """Bring the schema to the newest revision; safe when several processes start at once.

    The upgrade runs inside one write transaction that first takes a lock (SQLite: BEGIN IMMEDIATE;
    Postgres: an advisory lock), so a second process waits and then finds nothing to do.
    """
    engine = get_engine(url).execution_options(xorjobs_write=True)
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(7270917)"))
        config = alembic_config(url)
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def ensure_schema(url: str) -> None:
    """Upgrade once per process, and only when the store is behind (a cheap check otherwise)."""
    if url in _checked:
        return
    if current_revision(url) != head_revision(url):
        upgrade(url)
    _checked.add(url)
