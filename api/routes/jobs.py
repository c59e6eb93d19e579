"""Jobs: one job's record (error text included), its logged costs, its cost-curve plot, cancel."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response

from xorjobs.api.deps import CacheBuster, ServiceDep, reject_unknown_query
from xorjobs.api.schemas import NO_JOB, PLOT_HEADERS, PNG_RESPONSE, Cancelled, Job, JobCosts, reply

router = APIRouter(
    prefix="/jobs", tags=["jobs"], responses=NO_JOB, dependencies=[Depends(reject_unknown_query)]
)


@router.get("/{job_id}", summary="One job's record")
def show_job(job_id: str, service: ServiceDep) -> Job:
    return reply(Job, service.job(job_id))


@router.get("/{job_id}/costs", summary="One job's logged costs as [step, cost] pairs")
def job_costs(job_id: str, service: ServiceDep) -> JobCosts:
    return reply(JobCosts, service.costs(job_id))


@router.get(
    "/{job_id}/plot.png",
    summary="One job's cost curve (log scale)",
    response_class=Response,
    responses=PNG_RESPONSE,
)
def job_plot(
    job_id: str,
    service: ServiceDep,
    cache_buster: CacheBuster = None,
) -> Response:
    # A plain ``def``: FastAPI draws it in its thread pool, off the event loop.
    return Response(service.job_plot(job_id), media_type="image/png", headers=PLOT_HEADERS)


@router.post("/{job_id}/cancel", summary="Cancel one job")
def cancel_job(job_id: str, service: ServiceDep) -> Cancelled:
    return reply(Cancelled, service.cancel(job_id))
