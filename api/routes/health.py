"""``GET /health``: no auth; names the part that is down."""

from __future__ import annotations

import os
from typing import Any

from fastapi import APIRouter, Depends, Response
from sqlalchemy import Connection, text

from xorjobs.api.deps import ServiceDep, reject_unknown_query
from xorjobs.api.schemas import DatabaseState, Health
from xorjobs.store.engine import get_engine

router = APIRouter(tags=["health"], dependencies=[Depends(reject_unknown_query)])

SQLITE_ROOM_FLOOR_BYTES = 1 << 20
"""Below this much room a SQLite store counts as full: a sweep's rows and the WAL frames of one
transaction take hundreds of pages, so a store with less answers writes "database or disk is full"
while ``SELECT 1`` still succeeds (issue 14 §4: /health said ok beside a plain 500 on every submit)."""


def _database_state(service: Any) -> DatabaseState:
    try:
        with get_engine(service.url).connect() as connection:
            connection.execute(text("SELECT 1"))
            if (
                connection.dialect.name == "sqlite"
                and _sqlite_room_bytes(connection) < SQLITE_ROOM_FLOOR_BYTES
            ):
                return "full"
        return "ok"
    except Exception:
        return "unreachable"


def _sqlite_room_bytes(connection: Connection) -> int:
    """Bytes a SQLite store can still grow by: its free pages, plus what both its page limit
    (``max_page_count``) and the free space of its folder's file system allow.

    Reads a few header fields and one ``statvfs``: microseconds, so cheap enough for compose to poll.
    A write probe would not do: a rolled-back transaction never reaches the disk in WAL mode.
    """

    def pragma(name: str) -> int:
        return int(connection.exec_driver_sql(f"PRAGMA {name}").scalar_one())

    page_size = pragma("page_size")
    free_pages = pragma("freelist_count")
    pages_allowed = max(0, pragma("max_page_count") - pragma("page_count"))
    database = connection.engine.url.database
    if not database or database == ":memory:":
        return (free_pages + pages_allowed) * page_size
    folder = os.statvfs(os.path.dirname(os.path.abspath(database)))
    disk_free = folder.f_bavail * folder.f_frsize
    return free_pages * page_size + min(pages_allowed * page_size, disk_free)


def _broker_ok(service: Any) -> bool:
    try:
        with service.celery.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, timeout=2)
        return True
    except Exception:
        return False


@router.get(
    "/health",
    responses={503: {"model": Health, "description": "A part is down; the body names it"}},
    summary="Health of the API, its store and its broker",
)
def health(service: ServiceDep, response: Response) -> Health:
    database, broker = _database_state(service), _broker_ok(service)
    healthy = database == "ok" and broker
    if not healthy:
        response.status_code = 503
    return Health(
        status="ok" if healthy else "unavailable",
        database=database,
        broker="ok" if broker else "unreachable",
    )
