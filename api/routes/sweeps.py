"""Sweeps: create (one job per combination), list, show with counts, results, cancel, retry."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query

from xorjobs.api.deps import ServiceDep
from xorjobs.api.responses import SafeJSONResponse
from xorjobs.spec import SweepSpec

router = APIRouter(prefix="/sweeps", tags=["sweeps"])
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=200,
        description="Submitting again with the same key returns the first sweep instead of a new one",
    ),
]


@router.post(
    "",
    status_code=201,
    responses={200: {"description": "The sweep submitted earlier with this Idempotency-Key"}},
    summary="Submit a sweep: variant × seed × lr, one job per combination",
)
def create_sweep(
    spec: SweepSpec, service: ServiceDep, idempotency_key: IdempotencyKey = None
) -> SafeJSONResponse:
    result = service.submit(spec, idempotency_key)
    return SafeJSONResponse(result, status_code=201 if result["created"] else 200)


@router.get("", summary="The sweeps, newest first, with their state counts")
def list_sweeps(service: ServiceDep, limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> SafeJSONResponse:
    return SafeJSONResponse(service.sweeps(limit))


@router.get(
    "/{sweep_id}",
    summary="A sweep's state counts and jobs",
    responses={404: {"description": "No such sweep"}},
)
def show_sweep(sweep_id: str, service: ServiceDep) -> SafeJSONResponse:
    return SafeJSONResponse(service.status(sweep_id))


@router.get(
    "/{sweep_id}/results",
    summary="Every job's result with its logged costs",
    responses={404: {"description": "No such sweep"}},
)
def sweep_results(sweep_id: str, service: ServiceDep) -> SafeJSONResponse:
    return SafeJSONResponse(service.results(sweep_id))


@router.post(
    "/{sweep_id}/cancel",
    summary="Cancel the sweep's queued and running jobs",
    responses={404: {"description": "No such sweep"}},
)
def cancel_sweep(sweep_id: str, service: ServiceDep) -> SafeJSONResponse:
    return SafeJSONResponse(service.cancel(sweep_id))


@router.post(
    "/{sweep_id}/retry",
    summary="Re-queue the jobs that did not succeed",
    responses={404: {"description": "No such sweep"}},
)
def retry_sweep(
    sweep_id: str, service: ServiceDep, failed_only: Annotated[bool, Query()] = False
) -> SafeJSONResponse:
    return SafeJSONResponse(service.retry(sweep_id, failed_only))
