"""``GET /health``: no auth; names the part that is down."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Response
from sqlalchemy import text

from xorjobs.api.deps import ServiceDep, reject_unknown_query
from xorjobs.api.schemas import Health
from xorjobs.store.engine import get_engine

router = APIRouter(tags=["health"], dependencies=[Depends(reject_unknown_query)])


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
    responses={503: {"model": Health, "description": "A part is down; the body names it"}},
    summary="Health of the API, its store and its broker",
)
def health(service: ServiceDep, response: Response) -> Health:
    database, broker = _database_ok(service), _broker_ok(service)
    if not (database and broker):
        response.status_code = 503
    return Health(
        status="ok" if database and broker else "unavailable",
        database="ok" if database else "unreachable",
        broker="ok" if broker else "unreachable",
    )
