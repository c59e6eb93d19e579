"""The API's response bodies: one pydantic model per JSON shape, errors included (the request body is
``xorjobs.spec.SweepSpec``).

The store queries and ``Service`` keep building plain dicts (the CLI's in-process mode prints those same
dicts); every route passes its dict through ``reply``, which checks it against the route's model, so
/openapi.json documents what the API really sends. The models forbid unknown keys: a key added to a
query but not here fails the API tests (``tests/test_api_fuzz.py`` checks every response against its
schema) instead of going out undocumented.

Non-finite numbers: a diverged job's costs are NaN or infinite, which JSON cannot carry, so they travel
as the strings "nan", "inf" and "-inf" (``xorjobs.store.floats``). ``reply`` makes that replacement
before validating, and the numeric fields are typed ``JsonFloat`` (a finite number or one of those
words) or ``FiniteFloat`` (a field that can never be non-finite). Neither admits a bare NaN, so a
non-finite value that skipped ``reply`` is a server error in the tests, never a silent ``null``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

from xorjobs.defaults import JobState, Variant
from xorjobs.spec import Device, SweepSpec
from xorjobs.store.floats import json_safe
from xorjobs.store.workers import LOST_AFTER_HEARTBEATS, WorkerState

FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
NonFiniteWord = Literal["nan", "inf", "-inf"]
JsonFloat = FiniteFloat | NonFiniteWord
"""A number that may be non-finite: finite, or "nan", "inf", "-inf"."""
CostPoint = tuple[int, JsonFloat]
"""``[step, cost]``."""
Timestamp = Annotated[str, Field(description="ISO 8601, UTC")]
Queue = Literal["cpu", "gpu"]


class Shape(BaseModel):
    """Every response model: unknown keys are an error (see the module docstring)."""

    model_config = ConfigDict(extra="forbid")


Model = TypeVar("Model", bound=Shape)


def reply(model: type[Model], payload: Mapping[str, Any]) -> Model:
    """``payload`` (a ``Service`` dict) as ``model``, its non-finite numbers turned into their words."""
    return model.model_validate(json_safe(payload))


# --- errors -----------------------------------------------------------------------------------------


class ErrorDetail(Shape):
    """Every error but a validation error: 401, 404, 409, 413, 503."""

    detail: str = Field(description="One line saying what went wrong")


class FieldError(Shape):
    field: str = Field(description="Where: ``body.lrs.0``, ``query.limit``")
    message: str
    type: str = Field(description="pydantic's error type, e.g. ``greater_than``")


class ValidationErrorBody(Shape):
    """422: invalid input."""

    detail: str = Field(description="Each bad field with its message, ``; ``-separated")
    errors: list[FieldError] | SkipJsonSchema[None] = Field(
        default=None,
        description="One entry per bad field; absent when the body is not JSON at all, or when the "
        "service itself refused a value (an unknown ``by`` field, say)",
    )


def error_responses(descriptions: Mapping[int, str]) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` entries of these error statuses, each with its body's model."""
    return {
        status: {"model": ValidationErrorBody if status == 422 else ErrorDetail, "description": text}
        for status, text in descriptions.items()
    }


PROTECTED_RESPONSES = error_responses(
    {
        401: "Missing or wrong bearer token (when XORJOBS_API_TOKEN is set)",
        422: "Invalid input; the body names the field",
        503: "The store or the broker cannot be reached",
    }
)
"""What every route behind the token can answer besides its own responses."""
NO_SWEEP = error_responses({404: "No such sweep"})
NO_JOB = error_responses({404: "No such job"})


# --- health -----------------------------------------------------------------------------------------

PartState = Literal["ok", "unreachable"]
DatabaseState = Literal["ok", "unreachable", "full"]
"""``full``: the store answers reads but has no room left to write (a SQLite file's disk or page limit)."""


class Health(Shape):
    status: Literal["ok", "unavailable"]
    database: DatabaseState
    broker: PartState


# --- jobs -------------------------------------------------------------------------------------------


class Job(Shape):
    """One job's record (``xorjobs.store.queries.job_record``); the results are null until it succeeded."""

    id: str
    sweep_id: str
    variant: Variant
    seed: int
    lr: FiniteFloat
    steps: int
    log_every: int
    device: Device
    queue: Queue
    state: JobState
    attempt: int
    error: str | None = Field(description="Why it failed (cut to a few thousand characters)")
    created_at: Timestamp
    started_at: Timestamp | None
    finished_at: Timestamp | None
    duration_seconds: FiniteFloat | None
    worker: str | None
    device_name: str | None
    torch_version: str | None
    cpu_capability: str | None
    engine: str | None = Field(
        description="The engine that trained it: solo, exact (packed), native or batched (CUDA); null "
        "until it succeeded, and for jobs stored before xorjobs recorded it"
    )
    final_cost: JsonFloat | None = Field(
        description="The trained model's cost: the seed's criterion (BCE) of the final hypothesis; null "
        "until it succeeded, and for jobs stored before xorjobs recorded it"
    )
    last_logged_cost: JsonFloat | None = Field(
        description="The cost at the last logged step (computed before that step's update, as the seed does)"
    )
    accuracy: FiniteFloat | None
    stop_below: FiniteFloat | None = Field(
        default=None, description="Its sweep's early-stopping cost threshold (null: none)"
    )
    stop_when_solved: bool = Field(
        default=False,
        description="Whether it stops at the first logged step that labels all four inputs right",
    )
    steps_trained: int | None = Field(
        default=None,
        description="Steps it trained: its steps, or stopped_at_step + 1 when it stopped early; null until "
        "it succeeded",
    )
    stopped_at_step: int | None = Field(
        default=None,
        description="The logged step where its early-stopping rule held (its results equal a run with "
        "steps = stopped_at_step + 1); null when it ran all its steps",
    )
    stop_reason: Literal["cost_below", "solved"] | None = Field(
        default=None, description="Why it stopped early: cost_below or solved; null when it did not"
    )
    hypothesis: list[JsonFloat] | None = Field(description="The network's output for the four XOR inputs")
    predicted: list[FiniteFloat] | None = Field(description="The hypothesis thresholded at 0.5")


class JobWithCosts(Job):
    costs: list[CostPoint]


class JobCosts(Shape):
    job_id: str
    costs: list[CostPoint]


class Cancelled(Shape):
    cancelled: list[str] = Field(description="The ids of the jobs cancelled (those queued or running)")


# --- sweeps -----------------------------------------------------------------------------------------


class StateCounts(Shape):
    """Jobs per state, every state present (zeros included)."""

    queued: int
    running: int
    succeeded: int
    failed: int
    cancelled: int


class SweepSummary(Shape):
    """A sweep in the list: no spec (a sweep of 10,000 seeds would carry them all on every poll)."""

    sweep_id: str
    name: str | None
    created_at: Timestamp
    size: int = Field(description="Number of jobs")
    counts: StateCounts


class SweepList(Shape):
    sweeps: list[SweepSummary]


class SweepStatus(SweepSummary):
    spec: SweepSpec
    progress: float = Field(
        description="Jobs done, each running job counting the part of its steps it has logged: what the "
        "CLI's progress bars show (they move while a pack trains)"
    )
    elapsed_seconds: float | None = Field(
        description="Seconds since the sweep's first job started (to its last finish once every job is "
        "finished), on the store's clock; null before any started. The CLI's ETA: elapsed × left / done"
    )
    jobs: list[Job] = Field(description="In expansion order: variant, then seed, then lr")


class Submitted(Shape):
    sweep_id: str
    created: bool = Field(description="False: the sweep submitted earlier with this Idempotency-Key")
    jobs: list[Job]
    warnings: list[str]


class SweepResults(Shape):
    sweep_id: str
    name: str | None
    counts: StateCounts
    jobs: list[JobWithCosts]


class Retried(Shape):
    retried: list[str] = Field(description="The ids of the jobs queued again")


class DeletedSweep(Shape):
    sweep_id: str
    name: str | None
    created_at: Timestamp
    jobs: int
    costs: int
    cancelled: int = Field(description="Jobs that were queued or running and were cancelled first")


class Deleted(Shape):
    deleted: list[DeletedSweep]


class Pruned(Shape):
    dry_run: bool
    deleted: list[DeletedSweep] = Field(description="With dry_run: what would be deleted")


# --- what a sweep found (``xorjobs.analysis``) -----------------------------------------------------

GroupField = Literal["variant", "lr", "seed", "device"]
"""``xorjobs.analysis.GROUP_FIELDS`` as a type (a test keeps the two equal)."""


class GroupKey(Shape):
    """The ``by`` fields of a group: only those the summary was grouped by are present."""

    variant: Variant | SkipJsonSchema[None] = None
    lr: FiniteFloat | SkipJsonSchema[None] = None
    seed: int | SkipJsonSchema[None] = None
    device: Device | SkipJsonSchema[None] = None


class GroupStatistics(Shape):
    """``xorjobs.analysis.group_statistics``: its docstring defines each figure."""

    jobs: int
    succeeded: int
    failed: int
    cancelled: int
    unfinished: int = Field(description="Queued or running")
    solved: int = Field(description="Succeeded with accuracy 1.0")
    solve_rate: FiniteFloat | None = Field(description="solved / succeeded; null without a success")
    solve_rate_ci: tuple[FiniteFloat, FiniteFloat] | None = Field(
        description="The 95% Wilson interval of solve_rate"
    )
    final_cost_mean: JsonFloat | None = Field(description="Over the finite final costs")
    final_cost_std: JsonFloat | None
    final_cost_median: JsonFloat | None
    converged: int
    steps_to_converge_median: int | FiniteFloat | None
    diverged: int = Field(description="Jobs with a NaN or infinite cost")
    stopped: int = Field(default=0, description="Succeeded jobs that stopped early (early stopping)")
    stopped_at_median: int | FiniteFloat | None = Field(
        default=None, description="Median logged step where the stopped jobs' rule held (steps to solve)"
    )
    steps_trained_median: int | FiniteFloat | None = Field(
        default=None, description="Median steps the succeeded jobs trained (fewer when they stopped early)"
    )


class SummaryGroup(GroupStatistics, GroupKey):  # GroupKey's fields first, as the JSON has them
    pass


class Summary(Shape):
    sweep_id: str
    by: list[GroupField]
    threshold: FiniteFloat = Field(description="A job converged at its first step with cost below this")
    groups: list[SummaryGroup] = Field(description="One per combination of the by fields, in job order")


class ComparedGroup(GroupKey):
    a: GroupStatistics | None = Field(description="Null: sweep A has no such group")
    b: GroupStatistics | None


class Comparison(Shape):
    """``xorjobs compare --json`` (the CLI's, from two summaries; no route of its own)."""

    sweep_a: str
    sweep_b: str
    by: list[GroupField]
    threshold: FiniteFloat
    groups: list[ComparedGroup]


# --- workers ----------------------------------------------------------------------------------------


class WorkerPack(Shape):
    """What one training process of the worker holds now: a job alone (size 1) or a pack."""

    leader: str = Field(description="The first-claimed job of the pack (the job itself when alone)")
    size: int


class WorkerRecord(Shape):
    """One start of ``xorjobs worker`` (``xorjobs.store.workers.list_workers``)."""

    instance_id: str = Field(description="Unique per start, across hosts and restarts (a uuid4)")
    node: str = Field(description="Celery's node name, ``<queue>-<pid>@<host>``")
    host: str
    pid: int
    scope: str | None = Field(description="Its boot and PID namespace: where its pid means something")
    queues: list[Queue]
    engines: dict[Variant, str] = Field(description="The engine each variant trains on there")
    version: str
    state: WorkerState = Field(
        description=f"lost: no heartbeat for {LOST_AFTER_HEARTBEATS:g} of its heartbeat intervals (killed, "
        "frozen or cut off); stopped: shut down cleanly"
    )
    started_at: Timestamp
    last_heartbeat: Timestamp
    seconds_since_heartbeat: FiniteFloat = Field(description="On the database's clock")
    heartbeat_seconds: FiniteFloat
    stopped_at: Timestamp | None
    current: list[WorkerPack] = Field(description="One entry per training process that holds jobs now")


class WorkerList(Shape):
    workers: list[WorkerRecord]


# --- verify (issue 12 §6) -----------------------------------------------------------------------------


class RunOrigin(Shape):
    """What made a run: the device, its name, the CPU capability torch used, the torch version."""

    device: str | None
    device_name: str | None
    cpu_capability: str | None
    torch_version: str | None
    engine: str | None = Field(
        default=None, description="The stored job's engine (solo, exact, native, batched)"
    )


class VerifyReport(Shape):
    """A stored job re-run solo by a worker (``xorjobs.verification.verify_report``)."""

    job_id: str
    identical: bool = Field(
        description="Every logged cost, the hypothesis, the labels and the accuracy: same bits"
    )
    device: str = Field(description="Where the re-run ran")
    steps_compared: int
    max_abs_cost_diff: JsonFloat = Field(description="Over the logged steps; 0 when identical")
    max_rel_cost_diff: JsonFloat
    first_differing_step: int | None = Field(description="The first logged step whose cost differs")
    costs_identical: bool
    hypothesis_identical: bool
    labels_agree: bool
    accuracy_agrees: bool
    stored_accuracy: JsonFloat | None
    rerun_accuracy: JsonFloat | None
    stored: RunOrigin
    here: RunOrigin
    note: str | None = Field(
        description="Another device, CPU capability or torch version made the stored job"
    )


# --- bodies that are not JSON ------------------------------------------------------------------------


def text_response(media_type: str) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` entry of a 200 whose body is text of this media type (an export)."""
    return {
        200: {"description": "Successful Response", "content": {media_type: {"schema": {"type": "string"}}}}
    }


PNG_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "A PNG image",
        "content": {"image/png": {"schema": {"type": "string", "contentMediaType": "image/png"}}},
    }
}
PLOT_HEADERS = {"Cache-Control": "no-store"}
"""A plot changes while its sweep runs: never serve a cached one."""
