"""Jobs: one job's record (error text included), its logged costs, cancel."""

from __future__ import annotations

from fastapi import APIRouter

from xorjobs.api.deps import ServiceDep
from xorjobs.api.responses import SafeJSONResponse

router = APIRouter(prefix="/jobs", tags=["jobs"], responses={404: {"description": "No such job"}})


@router.get("/{job_id}", summary="One job's record")
def show_job(job_id: str, service: ServiceDep) -> SafeJSONResponse:
    return SafeJSONResponse(service.job(job_id))


@router.get("/{job_id}/costs", summary="One job's logged costs as [step, cost] pairs")
def job_costs(job_id: str, service: ServiceDep) -> SafeJSONResponse:
    return SafeJSONResponse(service.costs(job_id))


@router.post("/{job_id}/cancel", summary="Cancel one job")
def cancel_job(job_id: str, service: ServiceDep) -> SafeJSONResponse:
    return SafeJSONResponse(service.cancel(job_id))
