"""The error tree. The CLI and the API each translate it in one place (exit codes / HTTP statuses)."""

from __future__ import annotations

GOT_MAX_CHARS = 80
"""The longest value an error's ``(got ...)`` shows: a whole 800-bracket list or a long string is noise."""


def got(value: object) -> str:
    """``(got VALUE)`` for an error message: the value's repr, cut at GOT_MAX_CHARS with an ellipsis (the
    one place every front end's "(got ...)" is written)."""
    text = repr(value)
    if len(text) > GOT_MAX_CHARS:
        text = text[: GOT_MAX_CHARS - 1] + "…"
    return f"(got {text})"


class XorjobsError(Exception):
    """Root of every error xorjobs raises on purpose."""

    exit_code = 1
    http_status = 500


class InvalidSpec(XorjobsError):
    """The user's input breaks the job contract; ``field`` names the offending field."""

    exit_code = 2
    http_status = 422

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class NotFound(XorjobsError):
    """An unknown sweep or job id."""

    exit_code = 3
    http_status = 404


def no_job(job_id: str) -> NotFound:
    """``no job ID``, with a hint when the id is a sweep's (``verify``/``show``/``costs`` take a job id),
    as ``retry`` hints the other way round."""
    from xorjobs.defaults import JOB_ID_PREFIX, SWEEP_ID_PREFIX

    if job_id.startswith(SWEEP_ID_PREFIX):
        return NotFound(f"no job {job_id} (this takes a job id, which starts with {JOB_ID_PREFIX})")
    return NotFound(f"no job {job_id}")


class Unreachable(XorjobsError):
    """The API, the broker or the store cannot be reached."""

    exit_code = 4
    http_status = 503


class CannotServe(XorjobsError):
    """A service cannot start where it was asked to (``xorjobs api`` on a port another process holds)."""

    exit_code = 4
    http_status = 503


class Unauthorized(XorjobsError):
    """The API refused the token."""

    exit_code = 4
    http_status = 401


class LeaseLost(XorjobsError):
    """This attempt no longer owns the job (re-queued, cancelled, or taken over by a newer attempt).

    Not a failure of the job: the attempt that raises it stops quietly, and whoever owns the job now
    finishes it."""


class UnknownJob(XorjobsError):
    """A worker received a job id its store does not hold (e.g. a worker left on a local SQLite file)."""


class SweepActive(XorjobsError):
    """The sweep still has queued or running jobs, so it is not deleted."""

    exit_code = 1
    http_status = 409


class IdempotencyKeyReused(XorjobsError):
    """An idempotency key already names a sweep with a different spec: the new one is not submitted, and
    the old one is not passed off as its result. A usage error (exit 2) for the CLI, a 409 for the API."""

    exit_code = 2
    http_status = 409


class NoCuda(XorjobsError):
    """CUDA was asked for on a machine without it."""

    exit_code = 2
    http_status = 422


class NoStore(XorjobsError):
    """There is no xorjobs store at the configured URL (no SQLite file, or a database without the schema).

    Reads report it instead of creating one: a read never writes (issue 10, section 2)."""

    exit_code = 3
    http_status = 503


class StoreNotAtHead(XorjobsError):
    """The store's schema is not the revision this xorjobs needs; only ``xorjobs db upgrade`` migrates it."""

    exit_code = 4
    http_status = 503


class NoWorker(XorjobsError):
    """No live worker serves the queue a request needs (the store's registry says so): said at once, 503
    from the API and exit 4 from the CLI, instead of a wait that nobody would answer."""

    exit_code = 4
    http_status = 503


class NoAnswer(XorjobsError):
    """No worker answered a request in time (``POST /jobs/{id}/verify``: none serves the queue, or all are
    busy): 504 from the API, exit 4 from the CLI, as an unreachable service is."""

    exit_code = 4
    http_status = 504
