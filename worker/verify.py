"""Re-run a stored job solo here and compare it with the store (``xorjobs verify``, issue 12 §6).

Runs where torch is: in the CLI's own process (``xorjobs verify`` without an API), or in a worker for
``POST /jobs/{id}/verify`` (the API never imports torch; it stores a request, sends ``xorjobs.verify_job``
to the job's queue and reads the report this module stores, so API and worker need share nothing but the
store and the broker).
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from xorjobs.errors import NoCuda, XorjobsError
from xorjobs.models.train import train
from xorjobs.settings import Settings
from xorjobs.store import queries, verifications
from xorjobs.verification import verify_report
from xorjobs.verify_request import check_verifiable

log = logging.getLogger(__name__)


def verify_stored_job(url: str, job_id: str, device: str | None = None) -> dict[str, Any]:
    """The report of re-running ``job_id`` solo on ``device`` (default: the job's own) in this process."""
    job = queries.job_detail(url, job_id)
    check_verifiable(job)
    device = device or str(job["device"])
    if device == "cuda" and not torch.cuda.is_available():
        raise NoCuda("--device: cuda was asked for, and this machine has no usable CUDA device")
    stored_costs = [(int(step), float(cost)) for step, cost in queries.job_costs(url, job_id)]
    # Solo: the seed's loop with the job's inputs, whatever engine (pack) trained the stored job; a job
    # of an early-stopping sweep (issue 12 §3) is re-run with the same rule, so it stops where it did.
    stopping = {"stop": _stop_rule(job)} if _stops(job) else {}
    result = train(
        str(job["variant"]),
        int(job["seed"]),
        float(job["lr"]),
        int(job["steps"]),
        int(job["log_every"]),
        device,
        **stopping,
    )
    rerun = {
        "costs": result.costs,
        "hypothesis": result.hypothesis,
        "predicted": result.predicted,
        "accuracy": result.accuracy,
    }
    here = {
        "device": device,
        "device_name": result.device_name,
        "cpu_capability": result.cpu_capability,
        "torch_version": torch.__version__,
    }
    return verify_report(job, stored_costs, rerun, here)


def _stops(job: dict[str, Any]) -> bool:
    return job.get("stop_below") is not None or bool(job.get("stop_when_solved"))


def _stop_rule(job: dict[str, Any]) -> Any:
    from xorjobs.models.stopping import rule_of

    return rule_of(job.get("stop_below"), bool(job.get("stop_when_solved")))


def run_verification(settings: Settings, verification_id: str) -> None:
    """A worker's side of ``POST /jobs/{id}/verify``: re-run the requested job and store the report (or
    the one-line error a user caused: an unfinished job, no CUDA), for the waiting API to read."""
    url = settings.resolved_database_url
    request = verifications.pending(url, verification_id)
    if request is None:
        log.info("verification %s: already answered or gone; nothing to do", verification_id)
        return
    try:
        report = verify_stored_job(url, request.job_id, request.device)
    except XorjobsError as error:
        verifications.answer(url, verification_id, error=str(error), status=error.http_status)
        return
    except Exception as error:  # the API must hear of it now, not at its timeout
        log.exception("verification %s of job %s failed", verification_id, request.job_id)
        verifications.answer(url, verification_id, error=f"{type(error).__name__}: {error}", status=500)
        raise
    verifications.answer(url, verification_id, report=report)
