"""Dependencies: the settings, the service, and the token check (bearer header or dashboard cookie)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from xorjobs.errors import Unauthorized
from xorjobs.service import Service

_bearer = HTTPBearer(auto_error=False, description="Required when XORJOBS_API_TOKEN is set")

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
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """401 unless the bearer token matches XORJOBS_API_TOKEN, or the dashboard's session cookie does.

    Compared in constant time, never logged. The cookie is SameSite=Strict, so another site's page
    cannot make the browser send it along with a forged request.
    """
    if not is_authenticated(request, credentials):
        raise Unauthorized("missing or wrong bearer token")


ServiceDep = Annotated[Service, Depends(get_service)]
