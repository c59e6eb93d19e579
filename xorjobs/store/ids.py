"""Ids: strings with a kind prefix, so sweep ids and job ids never collide and one command takes either."""

from __future__ import annotations

import secrets

from xorjobs.defaults import JOB_ID_PREFIX, SWEEP_ID_PREFIX


def new_sweep_id() -> str:
    return SWEEP_ID_PREFIX + secrets.token_hex(6)


def new_job_id() -> str:
    return JOB_ID_PREFIX + secrets.token_hex(8)


def is_sweep_id(identifier: str) -> bool:
    return identifier.startswith(SWEEP_ID_PREFIX)
