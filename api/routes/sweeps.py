"""Sweeps: create (one job per combination), list, show with counts, results, cancel, retry, delete,
prune; and what a sweep found: the grouped summary, the cost export, the cost-curve plot.

What a sweep found is part of this router, not a module of its own: the package has one router per
resource, and the summary, the export and the plot are read-only views of one sweep
(``/sweeps/{id}/...``), as ``results`` is. Their logic lives in ``xorjobs.analysis``, ``xorjobs.plots`` and
``xorjobs.store.export``, so each route here stays a line or two.

Every route calls the same ``Service`` method as the CLI's in-process mode, so both print the same
numbers. The plot and the export are plain ``def`` routes: FastAPI runs them in its thread pool, so
drawing or streaming a large sweep never blocks the event loop.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import StreamingResponse

from xorjobs.analysis import DEFAULT_THRESHOLD, GROUP_FIELDS, check_threshold, parse_by
from xorjobs.api.conditional import NOT_MODIFIED, conditional
from xorjobs.api.deps import CacheBuster, ServiceDep, reject_unknown_query
from xorjobs.api.responses import SafeJSONResponse
from xorjobs.api.schemas import (
    NO_SWEEP,
    PLOT_HEADERS,
    PNG_RESPONSE,
    Cancelled,
    Deleted,
    Pruned,
    Retried,
    Submitted,
    Summary,
    SweepList,
    SweepResults,
    SweepStatus,
    error_responses,
    reply,
    text_response,
)
from xorjobs.defaults import SWEEP_ID_PREFIX
from xorjobs.errors import InvalidSpec, NotFound, SweepActive
from xorjobs.export_formats import MEDIA_TYPES, ExportFormat
from xorjobs.filters import (
    SORT_KEYS,
    JobFilter,
    JobOrder,
    SortKey,
    SweepFilter,
    parse_job_filter,
    parse_sweep_filter,
    query_parameter,
)
from xorjobs.spec import (
    IDEMPOTENCY_KEY_PATTERN,
    MAX_IDEMPOTENCY_KEY_LENGTH,
    MAX_JOBS_PER_SWEEP,
    MAX_NAME_LENGTH,
    SweepSpec,
    check_idempotency_key,
)

router = APIRouter(prefix="/sweeps", tags=["sweeps"], dependencies=[Depends(reject_unknown_query)])
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        description="Submitting the same spec again with the same key returns the first sweep instead of a "
        "new one; a different spec under a used key is a 409. Printable ASCII, no leading or trailing space.",
        # Documented here, checked by check_idempotency_key: the one rule the CLI applies too.
        json_schema_extra={"pattern": IDEMPOTENCY_KEY_PATTERN, "maxLength": MAX_IDEMPOTENCY_KEY_LENGTH},
    ),
]
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


def _values(what: str) -> Any:
    return Query(description=f"{what}; a comma list, may repeat (any of them matches)")


def job_filter(
    state: Annotated[list[str] | None, _values("Job states")] = None,
    variant: Annotated[list[str] | None, _values("Variants")] = None,
    lr: Annotated[list[str] | None, _values("Learning rates, as submitted")] = None,
    seed: Annotated[list[str] | None, _values("Seeds or inclusive ranges a-b")] = None,
) -> JobFilter:
    """The jobs a read keeps (``xorjobs.filters``; the CLI's --state, --variant, --lr, --seed)."""
    return parse_job_filter(states=state, variants=variant, lrs=lr, seeds=seed, name=query_parameter)


def job_order(
    sort: Annotated[
        SortKey | None,
        Query(description=f"Order by one of {', '.join(SORT_KEYS)}; missing values and NaN last"),
    ] = None,
    desc: Annotated[bool, Query(description="With sort: descending")] = False,
    limit: Annotated[
        int | None, Query(ge=1, le=MAX_JOBS_PER_SWEEP, description="At most this many jobs")
    ] = None,
) -> JobOrder:
    return JobOrder(sort=sort, descending=desc, limit=limit)


def sweep_filter(
    name: Annotated[
        str | None, Query(min_length=1, max_length=MAX_NAME_LENGTH, description="Part of the name (any case)")
    ] = None,
    state: Annotated[list[str] | None, _values("Sweeps with a job in one of these states")] = None,
) -> SweepFilter:
    return parse_sweep_filter(name_part=name, states=state, name=query_parameter)


JobFilterDep = Annotated[JobFilter, Depends(job_filter)]
JobOrderDep = Annotated[JobOrder, Depends(job_order)]


@router.post(
    "",
    status_code=201,
    responses={
        200: {"model": Submitted, "description": "The sweep submitted earlier with this Idempotency-Key"},
        **error_responses(
            {
                409: "The Idempotency-Key was used for a different spec",
                413: "The body is larger than 1 MiB",
            }
        ),
    },
    summary="Submit a sweep: variant × seed × lr, one job per combination",
)
def create_sweep(
    spec: SweepSpec, service: ServiceDep, response: Response, idempotency_key: IdempotencyKey = None
) -> Submitted:
    if idempotency_key is not None:
        check_idempotency_key(idempotency_key)
    result = reply(Submitted, service.submit(spec, idempotency_key))
    if not result.created:
        response.status_code = 200
    return result


@router.get("", summary="The sweeps, newest first, with their state counts")
def list_sweeps(
    service: ServiceDep,
    filters: Annotated[SweepFilter, Depends(sweep_filter)],
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> SweepList:
    return reply(SweepList, service.sweeps(limit, filters))


@router.post(
    "/prune",
    summary="Delete the finished sweeps that ended longer ago than older_than_seconds",
)
def prune_sweeps(
    service: ServiceDep,
    older_than_seconds: Annotated[float, Query(ge=0, allow_inf_nan=False, le=100 * 365 * 86400)],
    dry_run: Annotated[bool, Query(description="Only list what would be deleted")] = False,
) -> Pruned:
    return reply(Pruned, service.prune(older_than_seconds, dry_run))


@router.get("/{sweep_id}", summary="A sweep's state counts and jobs", responses=NO_SWEEP)
def show_sweep(sweep_id: str, service: ServiceDep, filters: JobFilterDep, order: JobOrderDep) -> SweepStatus:
    return reply(SweepStatus, service.status(sweep_id, filters, order))


@router.delete(
    "/{sweep_id}",
    summary="Delete a sweep with its jobs and their costs",
    responses={**NO_SWEEP, **error_responses({409: "Jobs are queued or running (pass cancel=true)"})},
)
def delete_sweep(
    sweep_id: str,
    service: ServiceDep,
    cancel: Annotated[
        bool, Query(description="Cancel queued and running jobs first instead of refusing")
    ] = False,
) -> Deleted:
    try:
        return reply(Deleted, service.delete_sweep(sweep_id, cancel))
    except SweepActive as error:
        raise SweepActive(
            f"{error}; cancel them first (POST /sweeps/{sweep_id}/cancel) or delete with ?cancel=true"
        ) from None


@router.get("/{sweep_id}/results", summary="Every job's result with its logged costs", responses=NO_SWEEP)
def sweep_results(
    sweep_id: str, service: ServiceDep, filters: JobFilterDep, order: JobOrderDep
) -> SweepResults:
    return reply(SweepResults, service.results(sweep_id, filters, order))


@router.post("/{sweep_id}/cancel", summary="Cancel the sweep's queued and running jobs", responses=NO_SWEEP)
def cancel_sweep(sweep_id: str, service: ServiceDep) -> Cancelled:
    return reply(Cancelled, service.cancel(sweep_id))


@router.post("/{sweep_id}/retry", summary="Re-queue the jobs that did not succeed", responses=NO_SWEEP)
def retry_sweep(sweep_id: str, service: ServiceDep, failed_only: Annotated[bool, Query()] = False) -> Retried:
    if not sweep_id.startswith(SWEEP_ID_PREFIX):  # a job id: unknown as a sweep, not "0 retried"
        raise NotFound(f"no sweep {sweep_id}")
    return reply(Retried, service.retry(sweep_id, failed_only))


# --- what a sweep found ----------------------------------------------------------------------------


def query_error(error: InvalidSpec) -> RequestValidationError:
    """A query value the analysis refused (``by``, ``threshold``), as a 422 of the shape of every other one:
    ``query.by: ...`` and an ``errors`` list (it was a bare ``by: ...``)."""
    return RequestValidationError(
        [{"loc": ("query", error.field), "msg": error.message, "type": "value_error", "input": None}]
    )


@router.get(
    "/{sweep_id}/summary",
    summary="Per group: counts, solve rate with a 95% Wilson interval, final costs, steps to converge",
    response_model=Summary,
    responses={**NO_SWEEP, **NOT_MODIFIED},
    # A group carries only the fields it was grouped by: the others are left out, not null.
    response_model_exclude_unset=True,
)
def sweep_summary(
    sweep_id: str,
    request: Request,
    service: ServiceDep,
    filters: JobFilterDep,
    by: By = None,
    threshold: Threshold = DEFAULT_THRESHOLD,
) -> Response:
    try:
        groups, limit = parse_by(by), check_threshold(threshold)
    except InvalidSpec as error:
        raise query_error(error) from None

    def build() -> Response:
        summary = reply(Summary, service.summary(sweep_id, groups, limit, filters))
        return SafeJSONResponse(summary.model_dump(mode="json", exclude_unset=True))

    return conditional(request, service, sweep_id, build)  # ETag / 304: it reads every cost


def _export(
    sweep_id: str, service: ServiceDep, export_format: ExportFormat, filters: JobFilter
) -> StreamingResponse:
    # NotFound is raised here, before streaming
    chunks = service.export_costs(sweep_id, export_format, filters)
    filename = f"{sweep_id}-costs.{export_format.value}"
    return StreamingResponse(
        chunks,
        media_type=MEDIA_TYPES[export_format],
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@router.get(
    "/{sweep_id}/costs.csv",
    summary="Every logged cost of the sweep as CSV (job_id, variant, seed, lr, device, step, cost), streamed",
    response_class=StreamingResponse,
    responses={**NO_SWEEP, **text_response(MEDIA_TYPES[ExportFormat.CSV])},
)
def sweep_costs_csv(sweep_id: str, service: ServiceDep, filters: JobFilterDep) -> StreamingResponse:
    return _export(sweep_id, service, ExportFormat.CSV, filters)


@router.get(
    "/{sweep_id}/costs.jsonl",
    summary="Every logged cost of the sweep as JSON lines, streamed",
    response_class=StreamingResponse,
    responses={**NO_SWEEP, **text_response(MEDIA_TYPES[ExportFormat.JSONL])},
)
def sweep_costs_jsonl(sweep_id: str, service: ServiceDep, filters: JobFilterDep) -> StreamingResponse:
    return _export(sweep_id, service, ExportFormat.JSONL, filters)


@router.get(
    "/{sweep_id}/plot.png",
    summary="The sweep's cost curves: per group the median (log scale) with its interquartile band",
    response_class=Response,
    responses={**NO_SWEEP, **PNG_RESPONSE, **NOT_MODIFIED},
)
def sweep_plot(
    sweep_id: str,
    request: Request,
    service: ServiceDep,
    by: By = "variant",
    threshold: Threshold | None = None,
    cache_buster: CacheBuster = None,
) -> Response:
    try:
        groups = parse_by(by) if by else []
    except InvalidSpec as error:
        raise query_error(error) from None

    def build() -> Response:
        png = service.sweep_plot(sweep_id, groups, threshold)
        return Response(png, media_type="image/png", headers=PLOT_HEADERS)

    return conditional(request, service, sweep_id, build)  # ETag / 304: it reads every cost
