"""Which store this is: a fingerprint every process on that store computes alike, from the store itself.

Messages carry the fingerprint of the store that published them, so a worker can tell "this job is not
in my store because its sweep was deleted" (same fingerprint: skip the message) from "this message was
published by another store" (a worker pointed at the wrong database: hand the message back, stop
consuming, say so once). A URL cannot serve: the API and a worker reach one database by different
host names, and two databases can share a name.

- Postgres: the cluster's ``system_identifier`` (random, chosen by ``initdb``; ``pg_control_system()``
  is executable by every role) and the database's OID, so a dropped and re-created database, or a
  database of the same name on another server, is another store.
- SQLite: the file's device and inode. A SQLite store only ever serves one host (WAL needs shared
  memory), and a deleted and re-created file is another store.
"""

from __future__ import annotations

import logging
import os

from sqlalchemy import text
from sqlalchemy.engine import make_url

from xorjobs.store.engine import read_session

log = logging.getLogger(__name__)
_fingerprints: dict[str, str] = {}


def store_fingerprint(url: str) -> str | None:
    """The store's fingerprint, or None when it cannot be read now (cached once read)."""
    if url in _fingerprints:
        return _fingerprints[url]
    try:
        fingerprint = _read_fingerprint(url)
    except Exception as error:  # the store is down: no fingerprint now; callers then judge nothing
        log.debug("cannot read the fingerprint of the store: %s", error)
        return None
    if fingerprint is not None:
        _fingerprints[url] = fingerprint
    return fingerprint


def _read_fingerprint(url: str) -> str | None:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if not parsed.database or parsed.database == ":memory:":
            return None
        status = os.stat(parsed.database)
        return f"sqlite:{status.st_dev}:{status.st_ino}"
    if parsed.get_backend_name() == "postgresql":
        with read_session(url) as session:
            system = session.scalar(text("SELECT system_identifier FROM pg_control_system()"))
            database = session.scalar(text("SELECT oid FROM pg_database WHERE datname = current_database()"))
        return f"postgresql:{system}:{database}"
    return None
