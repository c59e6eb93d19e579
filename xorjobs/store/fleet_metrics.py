"""The numbers ``GET /metrics`` serves, read from the store (the one place that sees every host).

Job and pack durations come from the jobs' ``started_at`` / ``finished_at`` (the database's clock, so
hosts with skewed clocks still give true durations). A pack is not a row of its own: the jobs one
training process trained together share its ``worker`` value and their claim-to-finish intervals
overlap, while the packs one process trains run one after another. So a pack is a run of one holder's
jobs whose intervals overlap (a solo job is a pack of one): a job starts a new pack when it was claimed
after every earlier job of its holder had finished.

Cost: both are aggregates the database computes (bucket counts per variant, and the packs with window
functions), so a scrape moves a few rows per variant and one row per pack, not one per job.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Float, case, func, literal, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.functions import FunctionElement

from xorjobs.store.engine import read_session
from xorjobs.store.tables import Job, JobState

RAN_TO_AN_END = (JobState.SUCCEEDED, JobState.FAILED)
"""The states whose jobs count in the durations: they trained from a claim to a result."""


class _EpochSeconds(FunctionElement[float]):
    """A stored ``UtcDateTime`` as seconds since the epoch (a SQL expression), for differences."""

    type = Float()
    inherit_cache = True
    name = "xorjobs_epoch_seconds"


@compiles(_EpochSeconds, "postgresql")
def _postgres_epoch(element: _EpochSeconds, compiler: SQLCompiler, **kw: Any) -> str:
    return f"EXTRACT(EPOCH FROM {compiler.process(element.clauses, **kw)})"


@compiles(_EpochSeconds, "sqlite")
def _sqlite_epoch(element: _EpochSeconds, compiler: SQLCompiler, **kw: Any) -> str:
    # SQLite keeps the text SQLAlchemy wrote (``YYYY-MM-DD HH:MM:SS.ffffff``), which julianday parses.
    return f"(julianday({compiler.process(element.clauses, **kw)}) * 86400.0)"


@dataclass(frozen=True)
class Histogram:
    """Cumulative counts: ``buckets[i]`` values were at most ``bounds[i]``; ``count`` and ``sum`` of all."""

    bounds: tuple[float, ...]
    buckets: tuple[int, ...]
    count: int
    sum: float


def job_counts(url: str) -> list[tuple[str, str, int]]:
    """``(state, queue, count)`` for every state and queue that has jobs."""
    with read_session(url) as session:
        rows = session.execute(
            select(Job.state, Job.queue, func.count()).group_by(Job.state, Job.queue)
        ).all()
    return [(str(state), str(queue), int(count)) for state, queue, count in rows]


def _histogram_columns(values: ColumnElement[Any], bounds: Sequence[float]) -> list[ColumnElement[Any]]:
    return [
        func.count(),
        func.coalesce(func.sum(values), 0.0),
        *(func.sum(case((values <= bound, 1), else_=0)) for bound in bounds),
    ]


def _histograms(rows: Sequence[Any], bounds: Sequence[float]) -> dict[str, Histogram]:
    return {
        str(row[0]): Histogram(
            tuple(bounds), tuple(int(value or 0) for value in row[3:]), int(row[1]), float(row[2] or 0.0)
        )
        for row in rows
    }


def job_duration_histograms(url: str, bounds: Sequence[float]) -> dict[str, Histogram]:
    """Per variant: claim-to-result seconds of every job that succeeded or failed."""
    seconds = _EpochSeconds(Job.finished_at) - _EpochSeconds(Job.started_at)
    with read_session(url) as session:
        rows = session.execute(
            select(Job.variant, *_histogram_columns(seconds, bounds))
            .where(Job.state.in_(RAN_TO_AN_END), Job.started_at.is_not(None), Job.finished_at.is_not(None))
            .group_by(Job.variant)
        ).all()
    return _histograms(rows, bounds)


def pack_histograms(
    url: str, duration_bounds: Sequence[float], size_bounds: Sequence[float]
) -> tuple[dict[str, Histogram], dict[str, Histogram]]:
    """Per variant: the seconds (first claim to last result) and the sizes of the packs (module docstring)."""
    started, finished = _EpochSeconds(Job.started_at), _EpochSeconds(Job.finished_at)
    runs = (
        select(
            Job.id.label("job_id"),
            Job.worker.label("holder"),
            Job.variant.label("variant"),
            started.label("started"),
            finished.label("finished"),
            # The latest end among the holder's jobs claimed before this one.
            func.max(finished)
            .over(partition_by=Job.worker, order_by=(started, Job.id), rows=(None, -1))
            .label("earlier_end"),
        )
        .where(
            Job.state.in_(RAN_TO_AN_END),
            Job.started_at.is_not(None),
            Job.finished_at.is_not(None),
            Job.worker.is_not(None),
        )
        .subquery()
    )
    starts_a_pack = case(
        (runs.c.earlier_end.is_(None), 1), (runs.c.started >= runs.c.earlier_end, 1), else_=0
    )
    numbered = select(
        runs,
        func.sum(starts_a_pack)
        .over(partition_by=runs.c.holder, order_by=(runs.c.started, runs.c.job_id), rows=(None, 0))
        .label("pack"),
    ).subquery()
    packs = (
        select(
            func.min(numbered.c.variant).label("variant"),
            func.count().label("size"),
            (func.max(numbered.c.finished) - func.min(numbered.c.started)).label("seconds"),
        )
        .group_by(numbered.c.holder, numbered.c.pack)
        .subquery()
    )
    sizes = packs.c.size * literal(1.0, Float)
    with read_session(url) as session:
        durations = session.execute(
            select(packs.c.variant, *_histogram_columns(packs.c.seconds, duration_bounds)).group_by(
                packs.c.variant
            )
        ).all()
        size_rows = session.execute(
            select(packs.c.variant, *_histogram_columns(sizes, size_bounds)).group_by(packs.c.variant)
        ).all()
    return _histograms(durations, duration_bounds), _histograms(size_rows, size_bounds)
