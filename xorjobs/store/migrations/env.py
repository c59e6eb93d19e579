"""Alembic environment: runs on the connection handed over by ``xorjobs.store.schema.upgrade``."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from xorjobs.store.tables import Base

config = context.config
connection = config.attributes.get("connection")


def _run(conn: object) -> None:
    # render_as_batch: SQLite cannot ALTER most things; batch mode copies the table instead.
    context.configure(connection=conn, target_metadata=Base.metadata, render_as_batch=True)  # type: ignore[arg-type]
    with context.begin_transaction():
        context.run_migrations()


if connection is not None:
    _run(connection)
else:  # the plain `alembic` command line, for writing new revisions
    with create_engine(config.get_main_option("sqlalchemy.url") or "").connect() as conn:
        _run(conn)
        conn.commit()
