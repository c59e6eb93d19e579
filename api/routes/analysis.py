"""What a sweep found (issue 5): the grouped summary, the cost export, the plots; and deleting sweeps.

Every route calls the same ``Service`` method as the CLI's in-process mode, so both print the same
numbers. The plots and the export are plain ``def`` routes: FastAPI runs them in its thread pool, so
drawing or streaming a large sweep never blocks the event loop.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response
from fastapi.responses import StreamingResponse

from xorjobs.analysis import DEFAULT_THRESHOLD, GROUP_FIELDS, check_threshold, parse_by
from xorjobs.api.deps import ServiceDep
from xorjobs.api.responses import SafeJSONResponse
from xorjobs.export_formats import MEDIA_TYPES, ExportFormat

router = APIRouter(tags=["analysis"])
NOT_FOUND_SWEEP: dict[int | str, dict[str, object]] = {404: {"description": "No such sweep"}}
NO_STORE = "no-store"
"""The plots change while a sweep runs: never serve a cached one."""

By = Annotated[
    str | None,
    Query(
        description=f"Comma-separated fields to group by: any of {', '.join(GROUP_FIELDS)}", max_length=100
    ),
]
Threshold = Annotated[
    float,
    Query(gt=0, allow_inf_nan=False, description="A job converged at its first step with cost below this"),
]


@router.get(
    "/sweeps/{sweep_id}/summary",
    summary="Per group: counts, solve rate with a 95% Wilson interval, final costs, steps to converge",
    responses=NOT_FOUND_SWEEP,
)
def sweep_summary(
    sweep_id: str, service: ServiceDep, by: By = None, threshold: Threshold = DEFAULT_THRESHOLD
) -> SafeJSONResponse:
    return SafeJSONResponse(service.summary(sweep_id, parse_by(by), check_threshold(threshold)))


def _export(sweep_id: str, service: ServiceDep, export_format: ExportFormat) -> StreamingResponse:
    chunks = service.export_costs(sweep_id, export_format)  # NotFound is raised here, before streaming
    filename = f"{sweep_id}-costs.{export_format.value}"
    return StreamingResponse(
        chunks,
        media_type=MEDIA_TYPES[export_format],
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@router.get(
    "/sweeps/{sweep_id}/costs.csv",
    summary="Every logged cost of the sweep as CSV (job_id, variant, seed, lr, device, step, cost), streamed",
    response_class=StreamingResponse,
    responses=NOT_FOUND_SWEEP,
)
def sweep_costs_csv(sweep_id: str, service: ServiceDep) -> StreamingResponse:
    return _export(sweep_id, service, ExportFormat.CSV)


@router.get(
    "/sweeps/{sweep_id}/costs.jsonl",
    summary="Every logged cost of the sweep as JSON lines, streamed",
    response_class=StreamingResponse,
    responses=NOT_FOUND_SWEEP,
)
def sweep_costs_jsonl(sweep_id: str, service: ServiceDep) -> StreamingResponse:
    return _export(sweep_id, service, ExportFormat.JSONL)


@router.get(
    "/sweeps/{sweep_id}/plot.png",
    summary="The sweep's cost curves: per group the median (log scale) with its interquartile band",
    response_class=Response,
    responses={**NOT_FOUND_SWEEP, 200: {"content": {"image/png": {}}}},
)
def sweep_plot(
    sweep_id: str, service: ServiceDep, by: By = "variant", threshold: Threshold | None = None
) -> Response:
    png = service.sweep_plot(sweep_id, parse_by(by) if by else [], threshold)
    return Response(png, media_type="image/png", headers={"Cache-Control": NO_STORE})


@router.get(
    "/jobs/{job_id}/plot.png",
    summary="One job's cost curve (log scale)",
    response_class=Response,
    responses={404: {"description": "No such job"}, 200: {"content": {"image/png": {}}}},
)
def job_plot(job_id: str, service: ServiceDep) -> Response:
    return Response(service.job_plot(job_id), media_type="image/png", headers={"Cache-Control": NO_STORE})


# --- housekeeping ---------------------------------------------------------------------------------


@router.delete(
    "/sweeps/{sweep_id}",
    summary="Delete a sweep with its jobs and their costs",
    responses={**NOT_FOUND_SWEEP, 409: {"description": "Jobs are queued or running (pass cancel=true)"}},
)
def delete_sweep(
    sweep_id: str,
    service: ServiceDep,
    cancel: Annotated[
        bool, Query(description="Cancel queued and running jobs first instead of refusing")
    ] = False,
) -> SafeJSONResponse:
    return SafeJSONResponse(service.delete_sweep(sweep_id, cancel))


@router.post(
    "/sweeps/prune", summary="Delete the finished sweeps that ended longer ago than older_than_seconds"
)
def prune_sweeps(
    service: ServiceDep,
    older_than_seconds: Annotated[float, Query(ge=0, allow_inf_nan=False, le=100 * 365 * 86400)],
    dry_run: Annotated[bool, Query(description="Only list what would be deleted")] = False,
) -> SafeJSONResponse:
    return SafeJSONResponse(service.prune(older_than_seconds, dry_run))
