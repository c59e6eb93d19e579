"""Dependencies: the settings, the service, and the token check (bearer header or dashboard cookie)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Annotated

from fastapi import Depends, Query, Request
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from xorjobs.errors import Unauthorized
from xorjobs.service import Service

bearer = HTTPBearer(auto_error=False, description="Required when XORJOBS_API_TOKEN is set")

SESSION_COOKIE = "xorjobs_session"
"""Set by ``POST /login`` (the dashboard): a browser cannot add a bearer header to a page load or an <img>."""


def get_service(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


def session_value(token: str) -> str:
    """The cookie's value: an HMAC of the token, so the cookie never carries the API token itself
    (a stolen cookie is no bearer token) and changing XORJOBS_API_TOKEN logs every browser out."""
    return hmac.new(token.encode(), b"xorjobs dashboard session v1", hashlib.sha256).hexdigest()


def is_authenticated(request: Request, credentials: HTTPAuthorizationCredentials | None = None) -> bool:
    """True when no token is required, or the bearer token or the session cookie matches (constant time)."""
    expected = get_service(request).settings.api_token
    if not expected:
        return True
    if credentials is not None:
        return secrets.compare_digest(credentials.credentials.encode(), expected.encode())
    cookie = request.cookies.get(SESSION_COOKIE, "")
    return secrets.compare_digest(cookie.encode(), session_value(expected).encode())


def require_token(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> None:
    """401 unless the bearer token matches XORJOBS_API_TOKEN, or the dashboard's session cookie does.

    Compared in constant time, never logged. The cookie is SameSite=Strict, so another site's page
    cannot make the browser send it along with a forged request.
    """
    if not is_authenticated(request, credentials):
        raise Unauthorized("missing or wrong bearer token")


def reject_unknown_query(request: Request) -> None:
    """422 for a query parameter the route does not take: ``?failed=true`` for ``failed_only`` would
    otherwise be ignored and retry the cancelled jobs too. Every API router depends on this."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    known = _query_names(route.dependant)
    unknown = sorted(set(request.query_params) - known)
    if unknown:
        takes = ", ".join(sorted(known)) or "none"
        raise RequestValidationError(
            [
                {
                    "loc": ("query", name),
                    "msg": f"unknown query parameter (this route takes: {takes})",
                    "type": "extra_forbidden",
                    "input": request.query_params[name],
                }
                for name in unknown
            ]
        )


def _query_names(dependant: Dependant) -> set[str]:
    """The query parameters a route takes, its dependencies' included."""
    names = {param.alias for param in dependant.query_params}
    for sub_dependant in dependant.dependencies:
        names |= _query_names(sub_dependant)
    return names


ServiceDep = Annotated[Service, Depends(get_service)]


CacheBuster = Annotated[
    str | None,
    Query(
        alias="t",
        max_length=100,
        description="Ignored: lets a page ask for a fresh image (the dashboard's plots)",
    ),
]
"""The dashboard's ``?t=`` on plot URLs: declared, so the unknown-parameter rule lets it through."""
