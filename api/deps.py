"""Dependencies: the settings, the service, and the bearer-token check."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from xorjobs.errors import Unauthorized
from xorjobs.service import Service

_bearer = HTTPBearer(auto_error=False, description="Required when XORJOBS_API_TOKEN is set")


def get_service(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


def require_token(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """401 unless the bearer token matches XORJOBS_API_TOKEN (compared in constant time, never logged)."""
    expected = get_service(request).settings.api_token
    if not expected:
        return
    given = credentials.credentials if credentials is not None else ""
    if not secrets.compare_digest(given.encode(), expected.encode()):
        raise Unauthorized("missing or wrong bearer token")


ServiceDep = Annotated[Service, Depends(get_service)]
