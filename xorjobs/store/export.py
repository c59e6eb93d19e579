"""Every cost curve of a sweep in one streamed query (issue 5: ``xorjobs export``, ``/costs.csv``).

One row per job and logged step. A 10,000-job sweep at the default 101 logged steps is about a million
rows, so the rows are never held in memory: the query streams (``yield_per``: a server-side cursor on
Postgres, batched fetches on SQLite) and the text is produced in chunks of lines as the rows arrive.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from enum import StrEnum
from math import isfinite
from typing import NamedTuple

from sqlalchemy import select

from xorjobs.errors import NotFound
from xorjobs.store.engine import read_session
from xorjobs.store.floats import decode_float, json_safe
from xorjobs.store.tables import Cost, Job, Sweep

EXPORT_COLUMNS = ("job_id", "variant", "seed", "lr", "device", "step", "cost")
ROWS_PER_FETCH = 5000
"""Rows fetched from the database at a time."""
LINES_PER_CHUNK = 2000
"""Lines of text yielded at a time (one write or one HTTP chunk each)."""


class ExportFormat(StrEnum):
    CSV = "csv"
    JSONL = "jsonl"


MEDIA_TYPES = {ExportFormat.CSV: "text/csv; charset=utf-8", ExportFormat.JSONL: "application/x-ndjson"}


class CostRow(NamedTuple):
    job_id: str
    variant: str
    seed: int
    lr: float
    device: str
    step: int
    cost: float


def require_sweep(url: str, sweep_id: str) -> None:
    """Raise NotFound before a stream starts (once streaming, an HTTP status can no longer change)."""
    with read_session(url) as session:
        if session.scalar(select(Sweep.id).where(Sweep.id == sweep_id)) is None:
            raise NotFound(f"no sweep {sweep_id}")


def cost_rows(url: str, sweep_id: str) -> Iterator[CostRow]:
    """The sweep's costs in job (expansion) order, then step order, as one streamed query."""
    statement = (
        select(Job.id, Job.variant, Job.seed, Job.lr, Job.device, Cost.step, Cost.value, Cost.kind)
        .join(Cost, Cost.job_id == Job.id)
        .where(Job.sweep_id == sweep_id)
        .order_by(Job.position, Cost.step)
        .execution_options(yield_per=ROWS_PER_FETCH)
    )
    with read_session(url) as session:
        for job_id, variant, seed, lr, device, step, value, kind in session.execute(statement):
            yield CostRow(job_id, variant, seed, lr, device, step, decode_float(value, kind))


def export_text(url: str, sweep_id: str, export_format: ExportFormat) -> Iterator[str]:
    """The export as text chunks; raises NotFound at once (not on first iteration) for an unknown sweep."""
    require_sweep(url, sweep_id)
    rows = cost_rows(url, sweep_id)
    return _csv_chunks(rows) if export_format is ExportFormat.CSV else _jsonl_chunks(rows)


def _csv_chunks(rows: Iterator[CostRow]) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(EXPORT_COLUMNS)
    pending = 0
    for row in rows:
        # Non-finite costs as "nan"/"inf"/"-inf", the same words as the JSON output.
        writer.writerow(row if isfinite(row.cost) else row._replace(cost=json_safe(row.cost)))
        pending += 1
        if pending >= LINES_PER_CHUNK:
            yield _drain(buffer)
            pending = 0
    yield _drain(buffer)


def _jsonl_chunks(rows: Iterator[CostRow]) -> Iterator[str]:
    lines: list[str] = []
    for row in rows:
        record = row._asdict() if isfinite(row.cost) else row._replace(cost=json_safe(row.cost))._asdict()
        lines.append(json.dumps(record, allow_nan=False))
        if len(lines) >= LINES_PER_CHUNK:
            yield "\n".join(lines) + "\n"
            lines = []
    if lines:
        yield "\n".join(lines) + "\n"


def _drain(buffer: io.StringIO) -> str:
    text = buffer.getvalue()
    buffer.seek(0)
    buffer.truncate()
    return text
