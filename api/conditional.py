"""Conditional GETs for the views that read every cost of a sweep: its summary and its plot.

Each answer carries an ETag made of the route, its query and the sweep's data version
(``xorjobs.store.versions``: cheap, from the job rows). A request whose ``If-None-Match`` holds that tag
gets a 304 without a cost being read, and a second tab (or client) asking for the same version is served
the body this process built for the first. ``Cache-Control: no-cache`` lets a browser keep the body but
ask again each time, which its ``fetch`` does with ``If-None-Match`` by itself.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from fastapi import Request, Response

from xorjobs.service import Service

CACHE_ENTRIES = 16
"""Bodies kept per API process: one per open view (sweep × grouping × route) is what it serves again."""
MAX_CACHED_BYTES = 4 << 20
"""A larger body is built anew each time (it is not kept in memory)."""
CACHE_CONTROL = "private, no-cache"
NOT_MODIFIED: dict[int | str, dict[str, Any]] = {
    304: {"description": "Not modified: the sweep is unchanged since the ETag sent in If-None-Match"}
}
"""The extra response the conditional routes document."""


class BodyCache:
    """ETag → (body, media type), least recently used first out; shared by the API's worker threads."""

    def __init__(self, entries: int = CACHE_ENTRIES) -> None:
        self._entries = entries
        self._bodies: OrderedDict[str, tuple[bytes, str]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, etag: str) -> tuple[bytes, str] | None:
        with self._lock:
            found = self._bodies.get(etag)
            if found is not None:
                self._bodies.move_to_end(etag)
            return found

    def put(self, etag: str, body: bytes, media_type: str) -> None:
        if len(body) > MAX_CACHED_BYTES:
            return
        with self._lock:
            self._bodies[etag] = (body, media_type)
            self._bodies.move_to_end(etag)
            while len(self._bodies) > self._entries:
                self._bodies.popitem(last=False)


def conditional(request: Request, service: Service, sweep_id: str, build: Callable[[], Response]) -> Response:
    """``build()``'s response with an ETag, or a 304 / the cached body when the sweep did not change."""
    version = service.sweep_version(sweep_id)
    if version is None:  # no such sweep: build() answers the 404
        return build()
    query = "&".join(
        sorted(f"{key}={value}" for key, value in request.query_params.multi_items() if key != "t")
    )
    digest = hashlib.sha256(f"{request.url.path}?{query}#{version}".encode()).hexdigest()[:32]
    etag = f'W/"{digest}"'
    headers = {"ETag": etag, "Cache-Control": CACHE_CONTROL}
    if etag in _tags(request.headers.get("if-none-match", "")):
        return Response(status_code=304, headers=headers)
    cache = _cache(request)
    cached = cache.get(etag)
    if cached is not None:
        return Response(cached[0], media_type=cached[1], headers=headers)
    response = build()
    if response.status_code == 200:
        cache.put(etag, bytes(response.body), response.media_type or "application/octet-stream")
        response.headers.update(headers)
    return response


def _tags(header: str) -> set[str]:
    tags = {tag.strip() for tag in header.split(",") if tag.strip()}
    # Weak comparison (RFC 9110 §13.1.2), as If-None-Match uses: W/"x" matches "x".
    return tags | {tag.removeprefix("W/") for tag in tags} | {f"W/{tag}" for tag in tags}


def _cache(request: Request) -> BodyCache:
    cache: BodyCache = request.app.state.body_cache  # made by create_app
    return cache
