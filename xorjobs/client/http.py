"""The client's HTTP transport: the API at ``XORJOBS_API_URL``, answering with the same JSON-ready dicts as
the in-process ``Service`` (the API calls that same service), its error statuses turned into xorjobs errors.

Imports nothing of the store, Celery or torch: this is what the base install (``pip install xorjobs``) runs.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx2

from xorjobs.client.protocol import Json
from xorjobs.defaults import MAX_VERIFY_WAIT_SECONDS, SWEEP_ID_PREFIX
from xorjobs.errors import (
    IdempotencyKeyReused,
    InvalidSpec,
    NotFound,
    SweepActive,
    Unauthorized,
    Unreachable,
    XorjobsError,
)
from xorjobs.export_formats import ExportFormat
from xorjobs.filters import (
    DEFAULT_ORDER,
    NO_JOB_FILTER,
    NO_SWEEP_FILTER,
    JobFilter,
    JobOrder,
    SweepFilter,
    job_query_parameters,
    sweep_query_parameters,
)
from xorjobs.spec import SweepSpec, check_idempotency_key


class HttpBackend:
    """Talks to ``XORJOBS_API_URL`` with the bearer token, translating statuses into xorjobs errors."""

    def __init__(self, base_url: str, token: str | None, client: httpx2.Client | None = None) -> None:
        if token and not _is_header_token(token):
            # Checked here, not when sent: a non-ASCII token cannot be encoded into a header at all, and a
            # trailing newline makes the request malformed (it read as "cannot reach the API").
            raise InvalidSpec(
                "XORJOBS_API_TOKEN",
                "must be printable ASCII without spaces, newlines or other control characters "
                "(a trailing newline from a file?)",
            )
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._base_url = base_url.rstrip("/")
        self._client = client or httpx2.Client(base_url=self._base_url, headers=headers, timeout=30)
        if client is not None:
            self._client.headers.update(headers)

    @property
    def base_url(self) -> str:
        return self._base_url

    def _call(self, method: str, path: str, **kwargs: Any) -> Json:
        try:
            response = self._client.request(method, path, **kwargs)
        except httpx2.TransportError as error:
            raise Unreachable(f"cannot reach the API at {self._base_url}: {error}") from None
        if response.status_code < 400:
            try:
                body: Json = response.json()
            except ValueError:
                raise self._not_an_api(response) from None
            return body
        self._raise_for(response)
        raise AssertionError("unreachable: _raise_for always raises for an error status")

    def submit(self, spec: SweepSpec, idempotency_key: str | None) -> Json:
        headers = {"Idempotency-Key": check_idempotency_key(idempotency_key)} if idempotency_key else {}
        try:
            return self._call("POST", "/sweeps", json=spec.model_dump(exclude_none=True), headers=headers)
        except SweepActive as error:  # a 409 from POST /sweeps: the key names a different sweep
            raise IdempotencyKeyReused(str(error)) from None

    def sweeps(self, limit: int, sweep_filter: SweepFilter = NO_SWEEP_FILTER) -> Json:
        return self._call("GET", "/sweeps", params={"limit": limit, **sweep_query_parameters(sweep_filter)})

    def status(
        self, sweep_id: str | None, job_filter: JobFilter = NO_JOB_FILTER, order: JobOrder = DEFAULT_ORDER
    ) -> Json:
        params = job_query_parameters(job_filter, order)
        return self._call("GET", f"/sweeps/{sweep_id or self._latest()}", params=params)

    def results(
        self, sweep_id: str | None, job_filter: JobFilter = NO_JOB_FILTER, order: JobOrder = DEFAULT_ORDER
    ) -> Json:
        params = job_query_parameters(job_filter, order)
        return self._call("GET", f"/sweeps/{sweep_id or self._latest()}/results", params=params)

    def job(self, job_id: str) -> Json:
        return self._call("GET", f"/jobs/{job_id}")

    def costs(self, job_id: str) -> Json:
        return self._call("GET", f"/jobs/{job_id}/costs")

    def cancel(self, sweep_or_job_id: str) -> Json:
        kind = "sweeps" if sweep_or_job_id.startswith(SWEEP_ID_PREFIX) else "jobs"
        return self._call("POST", f"/{kind}/{sweep_or_job_id}/cancel")

    def retry(self, sweep_id: str, failed_only: bool) -> Json:
        return self._call("POST", f"/sweeps/{sweep_id}/retry", params={"failed_only": failed_only})

    # --- issue 5 ------------------------------------------------------------------------------

    def summary(
        self, sweep_id: str | None, by: list[str], threshold: float, job_filter: JobFilter = NO_JOB_FILTER
    ) -> Json:
        params: dict[str, Any] = {"threshold": threshold, **job_query_parameters(job_filter)}
        if by:
            params["by"] = ",".join(by)
        return self._call("GET", f"/sweeps/{sweep_id or self._latest()}/summary", params=params)

    def export_costs(
        self, sweep_id: str | None, export_format: ExportFormat, job_filter: JobFilter = NO_JOB_FILTER
    ) -> Iterator[str]:
        path = f"/sweeps/{sweep_id or self._latest()}/costs.{export_format.value}"
        try:
            with self._client.stream("GET", path, params=job_query_parameters(job_filter)) as response:
                if response.status_code >= 400:
                    response.read()
                    self._raise_for(response)
                yield from response.iter_text()
        except httpx2.TransportError as error:
            raise Unreachable(f"cannot reach the API at {self._base_url}: {error}") from None

    def sweep_plot(self, sweep_id: str | None, by: list[str], threshold: float | None) -> bytes:
        params: dict[str, Any] = {"by": ",".join(by)} if by else {}
        if threshold is not None:
            params["threshold"] = threshold
        return self._bytes("GET", f"/sweeps/{sweep_id or self._latest()}/plot.png", params=params)

    def job_plot(self, job_id: str) -> bytes:
        return self._bytes("GET", f"/jobs/{job_id}/plot.png")

    def delete_sweep(self, sweep_id: str, cancel_active: bool) -> Json:
        answer = self._bytes("DELETE", f"/sweeps/{sweep_id}", params={"cancel": cancel_active})
        body: Json = json.loads(answer)
        return body

    def prune(self, older_than_seconds: float, dry_run: bool) -> Json:
        return self._call(
            "POST", "/sweeps/prune", params={"older_than_seconds": older_than_seconds, "dry_run": dry_run}
        )

    def verify(self, job_id: str, device: str | None = None, timeout: float | None = None) -> Json:
        params: dict[str, Any] = {"device": device} if device else {}
        if timeout is not None:
            params["timeout"] = timeout
        # The API waits for a worker to re-run the job (at most MAX_VERIFY_WAIT_SECONDS): wait past that.
        wait = (timeout or MAX_VERIFY_WAIT_SECONDS) + 30
        return self._call("POST", f"/jobs/{job_id}/verify", params=params, timeout=wait)

    def _bytes(self, method: str, path: str, **kwargs: Any) -> bytes:
        try:
            response = self._client.request(method, path, **kwargs)
        except httpx2.TransportError as error:
            raise Unreachable(f"cannot reach the API at {self._base_url}: {error}") from None
        if response.status_code >= 400:
            self._raise_for(response)
        return response.content

    def _raise_for(self, response: httpx2.Response) -> None:
        """Translate an error status into the xorjobs error the CLI reports (one place for every call)."""
        detail = _detail(response)
        if detail is None and response.status_code >= 500:
            # A crash, or a proxy in front of the API (plain text or an HTML page): one line, not the page.
            request = response.request
            raise Unreachable(
                f"the API at {self._base_url} answered {response.status_code} {response.reason_phrase} "
                f"({request.method} {request.url.path})"
            )
        if detail is None or (response.status_code == 404 and detail == ROUTE_NOT_FOUND):
            raise self._not_an_api(response)
        if response.status_code == 401:
            raise Unauthorized(f"the API at {self._base_url} refused the token: {detail}")
        if response.status_code == 404:
            raise NotFound(detail)
        if response.status_code in (413, 422):
            field, _, message = detail.partition(": ")
            field = field.removeprefix("body.").removeprefix("query.").removeprefix("path.")
            raise InvalidSpec(field, message or detail)
        if response.status_code == 409:
            raise SweepActive(detail)
        if response.status_code in (503, 504):
            raise Unreachable(detail)
        raise XorjobsError(f"the API answered {response.status_code}: {detail}")

    def _not_an_api(self, response: httpx2.Response) -> Unreachable:
        """Another server at the URL (or the API under a wrong path): one line, exit 4, not its page."""
        request = response.request
        kind = response.headers.get("content-type", "no content type").split(";")[0]
        return Unreachable(
            f"the server at {self._base_url} is not an xorjobs API ({request.method} {request.url.path} "
            f"answered {response.status_code}, {kind}); check XORJOBS_API_URL"
        )

    def _latest(self) -> str:
        sweeps = self.sweeps(1)["sweeps"]
        if not sweeps:
            raise NotFound("there are no sweeps yet; submit one with `xorjobs submit`")
        sweep_id: str = sweeps[0]["sweep_id"]
        return sweep_id


def _is_header_token(token: str) -> bool:
    """A bearer token travels in a header: visible ASCII only (``!`` to ``~``)."""
    return all("!" <= character <= "~" for character in token)


ROUTE_NOT_FOUND = "Not Found"
"""FastAPI's 404 detail for a path with no route; every xorjobs 404 names what it did not find."""


def _detail(response: httpx2.Response) -> str | None:
    """The error's ``detail``, as every xorjobs API error carries it; None for any other answer."""
    try:
        body = response.json()
    except ValueError:
        return None
    detail = body.get("detail") if isinstance(body, dict) else None
    if detail is None:
        return None
    return detail if isinstance(detail, str) else str(detail)
