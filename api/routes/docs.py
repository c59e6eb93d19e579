"""The OpenAPI schema and its Swagger UI page, behind the token like every route but ``/health``.

FastAPI's own ``/docs`` loads Swagger UI from a CDN and its ``/redoc`` ReDoc from another; both are
turned off in ``api/main.py`` and these routes take their place. The Swagger UI files are served from
``api/static/swagger-ui`` (``SOURCE.md`` there says where they come from), so the page works offline, and
its Content-Security-Policy lets it load and call nothing but this origin. ReDoc is not served: Swagger UI
shows the same schema.

With XORJOBS_API_TOKEN set, ``/openapi.json`` takes the bearer header or the dashboard's session cookie;
``/docs`` is a browser page, so without the cookie it is redirected to the dashboard's ``/login``, and once
logged in Swagger UI's own requests (the schema, "Try it out") carry the cookie.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials

from xorjobs.api.deps import bearer, is_authenticated, require_token
from xorjobs.api.routes.dashboard import STATIC_FOLDER, login_redirect

router = APIRouter(include_in_schema=False)

SWAGGER_UI_VERSION = "5.35.0"
"""npm ``swagger-ui-dist``, copied into ``api/static/swagger-ui`` (the cache key of its URLs below)."""
SWAGGER_UI_FOLDER = STATIC_FOLDER / "swagger-ui"
SWAGGER_UI_FILES = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "favicon-32x32.png": "image/png",
}
"""Served by name; anything else is 404 (no path is ever built from the request)."""
DOCS_HEADERS = {
    # Swagger UI sets element styles and shows data: images (its icons); nothing may come from elsewhere.
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; form-action 'self'; base-uri 'none'; "
    "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
_ASSETS = f"/static/swagger-ui/{SWAGGER_UI_VERSION}"
DOCS_PAGE = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>xorjobs API docs</title>
<link rel="icon" type="image/png" href="{_ASSETS}/favicon-32x32.png">
<link rel="stylesheet" href="{_ASSETS}/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="{_ASSETS}/swagger-ui-bundle.js"></script>
<script src="/static/docs.js"></script>
</body>
</html>
"""


@router.get("/openapi.json", dependencies=[Depends(require_token)])
def openapi_schema(request: Request) -> JSONResponse:
    return JSONResponse(request.app.openapi())


@router.get("/docs", response_class=HTMLResponse)
def docs_page(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> Response:
    if not is_authenticated(request, credentials):
        return login_redirect(request)
    return HTMLResponse(DOCS_PAGE, headers=DOCS_HEADERS)


@router.get("/static/swagger-ui/{version}/{name}")
def swagger_ui_file(version: str, name: str) -> Response:
    media_type = SWAGGER_UI_FILES.get(name)
    if media_type is None or version != SWAGGER_UI_VERSION:
        return Response(status_code=404)
    # The version is in the URL, so a browser may keep the file: a new copy comes with a new URL.
    cache = {"Cache-Control": "public, max-age=31536000, immutable"}
    return FileResponse(SWAGGER_UI_FOLDER / name, media_type=media_type, headers=cache)
