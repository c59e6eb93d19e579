"""``GET /health``: no auth; names the part that is down."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from sqlalchemy import text

from xorjobs.api.deps import ServiceDep
from xorjobs.api.responses import SafeJSONResponse
from xorjobs.store.engine import get_engine

router = APIRouter(tags=["health"])


def _database_ok(service: Any) -> bool:
    try:
        with get_engine(service.url).connect() as connection:
            connection.execute(text("SELECT 1"))
        return True
    except Exception:
        return False


def _broker_ok(service: Any) -> bool:
    try:
        with service.celery.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, timeout=2)
        return True
    except Exception:
        return False


@router.get(
    "/health",
    responses={503: {"description": "A part is down; the body names it"}},
    summary="Health of the API, its store and its broker",
)
def health(service: ServiceDep) -> SafeJSONResponse:
    parts = {"database": _database_ok(service), "broker": _broker_ok(service)}
    body = {"status": "ok" if all(parts.values()) else "unavailable"}
    body.update({name: "ok" if ok else "unreachable" for name, ok in parts.items()})
    return SafeJSONResponse(body, status_code=200 if all(parts.values()) else 503)
