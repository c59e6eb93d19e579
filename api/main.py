"""The FastAPI app: ``create_app(settings)`` for tests, ``app`` for uvicorn (``xorjobs.api.main:app``)."""

from __future__ import annotations

import logging
import re
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException

import xorjobs
from xorjobs.api.conditional import BodyCache
from xorjobs.api.deps import require_token
from xorjobs.api.limits import BodySizeLimit
from xorjobs.api.responses import SafeJSONResponse
from xorjobs.api.routes import dashboard, docs, health, jobs, metrics, sweeps, workers
from xorjobs.api.schemas import PROTECTED_RESPONSES
from xorjobs.errors import Unauthorized, XorjobsError
from xorjobs.service import Service
from xorjobs.settings import Settings, get_settings
from xorjobs.store.unavailable import store_unavailable

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    # The API never migrates: it refuses to start (exit 4, naming `xorjobs db upgrade`) unless the store
    # is at the head revision (issue 10, section 2).
    service = Service(settings).ready_to_serve()
    app = FastAPI(
        title="xorjobs",
        version=xorjobs.__version__,
        summary="Queued training jobs for the XOR multi-layer-perceptron experiments",
        lifespan=_watching_queues(service),
        # FastAPI's own /docs and /redoc load their scripts from CDNs and answer without the token:
        # api/routes/docs.py serves the schema and a local Swagger UI behind it instead (no ReDoc).
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.service = service
    app.state.body_cache = BodyCache()  # the summaries and plots served again by ETag (api/conditional.py)
    app.include_router(health.router)
    protected = [Depends(require_token)]
    app.include_router(sweeps.router, dependencies=protected, responses=PROTECTED_RESPONSES)
    app.include_router(jobs.router, dependencies=protected, responses=PROTECTED_RESPONSES)
    app.include_router(workers.router, dependencies=protected, responses=PROTECTED_RESPONSES)
    app.include_router(metrics.router, dependencies=protected, responses=PROTECTED_RESPONSES)
    app.include_router(dashboard.router)  # its pages redirect to /login themselves (a browser gets no 401)
    app.include_router(docs.router)  # /openapi.json behind the token, /docs like a dashboard page
    app.add_exception_handler(XorjobsError, _xorjobs_error)
    app.add_exception_handler(SQLAlchemyError, _store_error)
    app.add_exception_handler(sqlite3.Error, _store_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_middleware(BodySizeLimit)
    return app


def _watching_queues(service: Service) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """While the API runs, a background thread keeps the answer to "which queues do live workers
    consume?" fresh, so a submit reads it instead of waiting for a broadcast (issue 10, section 3)."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        service.queue_watch.start()
        try:
            yield
        finally:
            service.queue_watch.stop()

    return lifespan


async def _xorjobs_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, XorjobsError)
    headers = {"WWW-Authenticate": "Bearer"} if isinstance(error, Unauthorized) else None
    return SafeJSONResponse({"detail": str(error)}, status_code=error.http_status, headers=headers)


async def _store_error(request: Request, error: Exception) -> JSONResponse:
    """The store failing under a request (disk full, locked past the busy timeout, Postgres gone) is a
    503 with one line, like any unreachable part; any other database error stays a 500."""
    unavailable = store_unavailable(error)
    if unavailable is None:
        raise error
    log.warning("%s %s: %s", request.method, request.url.path, unavailable)
    return await _xorjobs_error(request, unavailable)


async def _http_error(request: Request, error: Exception) -> JSONResponse:
    """FastAPI answers 400 for a body it cannot even decode (bytes that are not UTF-8 JSON); invalid input
    is a 422 naming the field everywhere else in this API, so that case is one too."""
    assert isinstance(error, StarletteHTTPException)
    if error.status_code == 400 and "parsing the body" in str(error.detail):
        return SafeJSONResponse({"detail": "body: not valid JSON"}, status_code=422)
    return SafeJSONResponse({"detail": error.detail}, status_code=error.status_code, headers=error.headers)


async def _validation_error(request: Request, error: Exception) -> JSONResponse:
    """422 whose detail names each bad field (``body.lrs.0``), with inputs made JSON-safe (NaN, bytes)."""
    assert isinstance(error, RequestValidationError)
    details = []
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    for item in error.errors():
        field, message = _located(tuple(str(part) for part in item["loc"]), item["msg"])
        if item["type"] == "json_invalid":  # its loc's number is a character offset, not a list index
            field, message = "body", f"not valid JSON ({message}, at character {item['loc'][-1]})"
        elif field == "body" and content_type and not content_type.endswith("json"):
            message = f"{message}: the body must be JSON (Content-Type: application/json), not {content_type}"
        details.append({"field": field, "message": message, "type": item["type"]})
    summary = "; ".join(f"{item['field']}: {item['message']}" for item in details)
    return SafeJSONResponse({"detail": summary, "errors": details}, status_code=422)


_KEY_PATH = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*")


def _located(location: tuple[str, ...], message: str) -> tuple[str, str]:
    """The field of one error, as a key path. A model validator's error is placed at its container
    (``body``) and names the key first (``lrs.low: Input should be ...``, ``sampler_seed: ...``): that key
    becomes the field (``body.lrs.low``), as pydantic's own errors are placed, and leaves the message."""
    message = message.removeprefix("Value error, ")
    head, separator, rest = message.partition(": ")
    if separator and _KEY_PATH.fullmatch(head) is not None:
        keys = tuple(head.split("."))
        if len(location) == 1:  # the whole body (or query): the key path is all of the head
            return ".".join(location + keys), rest
        if location and keys[0] == location[-1]:  # ``body.lrs`` with ``lrs: ...`` (or ``lrs.2: ...``)
            return ".".join(location + keys[1:]), rest
    return ".".join(location), message


def __getattr__(name: str) -> FastAPI:
    # `xorjobs.api.main:app` for uvicorn, built on first access so importing this module has no side effects.
    if name == "app":
        return create_app()
    raise AttributeError(name)
