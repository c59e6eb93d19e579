"""Verify requests and their reports (``verifications``): how the torch-free API and a worker on another
host hand a ``POST /jobs/{id}/verify`` back and forth through the store (issue 12 §6)."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update

from xorjobs.errors import no_job
from xorjobs.store.clock import utcnow
from xorjobs.store.engine import read_session, write_session
from xorjobs.store.floats import json_safe
from xorjobs.store.tables import Job, Verification

VERIFICATION_ID_PREFIX = "ver-"


@dataclass(frozen=True)
class Request:
    verification_id: str
    job_id: str
    device: str | None


@dataclass(frozen=True)
class Answer:
    """A worker's answer: the report, or a one-line error with the HTTP status the API answers."""

    report: dict[str, Any] | None
    error: str | None
    status: int | None


def request(url: str, job_id: str, device: str | None) -> str:
    """Record a request to verify ``job_id``; returns its id (NotFound for an unknown job)."""
    verification_id = VERIFICATION_ID_PREFIX + secrets.token_hex(8)
    with write_session(url) as session:
        if session.get(Job, job_id) is None:
            raise no_job(job_id)
        session.add(Verification(id=verification_id, job_id=job_id, device=device, requested_at=utcnow()))
    return verification_id


def pending(url: str, verification_id: str) -> Request | None:
    """The request, while it has no answer (None once answered, or gone with its job)."""
    with read_session(url) as session:
        row = session.get(Verification, verification_id)
        if row is None or row.answered_at is not None:
            return None
        return Request(row.id, row.job_id, row.device)


def answer(
    url: str,
    verification_id: str,
    *,
    report: dict[str, Any] | None = None,
    error: str | None = None,
    status: int | None = None,
) -> bool:
    """Store the worker's answer, once (a second answer to the same request changes nothing)."""
    values: dict[str, Any] = {"answered_at": utcnow(), "error": error, "error_status": status}
    if report is not None:
        values["report_json"] = json.dumps(json_safe(report), allow_nan=False)
    with write_session(url) as session:
        result = session.execute(
            update(Verification)
            .where(Verification.id == verification_id, Verification.answered_at.is_(None))
            .values(**values)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]


def answer_of(url: str, verification_id: str) -> Answer | None:
    """The answer, or None while no worker has answered."""
    with read_session(url) as session:
        row = session.execute(
            select(
                Verification.answered_at,
                Verification.report_json,
                Verification.error,
                Verification.error_status,
            ).where(Verification.id == verification_id)
        ).one_or_none()
    if row is None or row.answered_at is None:
        return None
    report = json.loads(row.report_json) if row.report_json is not None else None
    return Answer(report, row.error, row.error_status)
