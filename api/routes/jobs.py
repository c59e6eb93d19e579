"""Jobs: one job's record (error text included), its logged costs, its cost-curve plot, cancel."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response

from xorjobs.api.deps import CacheBuster, ServiceDep, reject_unknown_query
from xorjobs.api.schemas import (
    NO_JOB,
    PLOT_HEADERS,
    PNG_RESPONSE,
    Cancelled,
    Job,
    JobCosts,
    VerifyReport,
    error_responses,
    reply,
)
from xorjobs.defaults import MAX_VERIFY_WAIT_SECONDS, VERIFY_WAIT_SECONDS
from xorjobs.spec import Device

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


@router.post(
    "/{job_id}/verify",
    summary="Re-run a stored job solo on a worker and compare it bit for bit",
    responses=error_responses(
        {
            422: "The job did not succeed (nothing to compare), or the worker has no CUDA for device=cuda",
            503: "The store or the broker cannot be reached, or no live worker serves the device's queue",
            504: "No worker of the device's queue answered within the timeout",
        }
    ),
)
def verify_job(
    job_id: str,
    service: ServiceDep,
    device: Annotated[
        Device | None, Query(description="Where to re-run: cpu or cuda (default: the job's)")
    ] = None,
    timeout: Annotated[
        float, Query(gt=0, le=MAX_VERIFY_WAIT_SECONDS, description="Seconds to wait for a worker's report")
    ] = VERIFY_WAIT_SECONDS,
) -> VerifyReport:
    # A plain ``def``: the wait for the worker runs in FastAPI's thread pool, off the event loop. The re-run
    # itself is a worker's (a Celery task on the device's queue): this process never imports torch.
    return reply(VerifyReport, service.verify_on_worker(job_id, device, timeout))
