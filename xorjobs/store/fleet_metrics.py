"""The numbers ``GET /metrics`` serves, read from the store (the one place that sees every host).

Job and pack durations come from the jobs' ``started_at`` / ``finished_at`` (the database's clock, so
hosts with skewed clocks still give true durations). A pack is not a row of its own: the jobs one
training process trained together share its ``worker`` value and their claim-to-finish intervals
overlap, while the packs one process trains run one after another. So a pack is a run of one holder's
jobs with overlapping intervals (a solo job is a pack of one).

Cost: the durations read three columns of every finished job at each scrape (a store of 100,000
finished jobs is a few MB per scrape); ``xorjobs prune`` keeps that bounded.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, select

from xorjobs.store.engine import read_session
from xorjobs.store.tables import Job, JobState

RAN_TO_AN_END = (JobState.SUCCEEDED, JobState.FAILED)
"""The states whose jobs count in the durations: they trained from a claim to a result."""


@dataclass(frozen=True)
class FinishedRun:
    variant: str
    holder: str
    started_at: dt.datetime
    finished_at: dt.datetime

    @property
    def seconds(self) -> float:
        return max(0.0, (self.finished_at - self.started_at).total_seconds())


@dataclass(frozen=True)
class PackRun:
    variant: str
    size: int
    seconds: float


def job_counts(url: str) -> list[tuple[str, str, int]]:
    """``(state, queue, count)`` for every state and queue that has jobs."""
    with read_session(url) as session:
        rows = session.execute(
            select(Job.state, Job.queue, func.count()).group_by(Job.state, Job.queue)
        ).all()
    return [(str(state), str(queue), int(count)) for state, queue, count in rows]


def finished_runs(url: str) -> list[FinishedRun]:
    """Every job that trained to a result, with its holder and its claim-to-finish times."""
    with read_session(url) as session:
        rows = session.execute(
            select(Job.variant, Job.worker, Job.started_at, Job.finished_at).where(
                Job.state.in_(RAN_TO_AN_END),
                Job.started_at.is_not(None),
                Job.finished_at.is_not(None),
                Job.worker.is_not(None),
            )
        ).all()
    return [
        FinishedRun(variant, holder, started, finished)
        for variant, holder, started, finished in rows
        if holder is not None and started is not None and finished is not None  # the WHERE says so
    ]


def pack_runs(runs: Sequence[FinishedRun]) -> list[PackRun]:
    """The packs (and solo jobs, as packs of one) the finished jobs were trained in (module docstring)."""
    by_holder: dict[str, list[FinishedRun]] = defaultdict(list)
    for run in runs:
        by_holder[run.holder].append(run)
    packs: list[PackRun] = []
    for members in by_holder.values():
        members.sort(key=lambda run: run.started_at)
        group = [members[0]]
        end = members[0].finished_at
        for run in members[1:]:
            if run.started_at < end:  # claimed before the pack in progress finished: one of its members
                group.append(run)
                end = max(end, run.finished_at)
                continue
            packs.append(_pack_of(group, end))
            group, end = [run], run.finished_at
        packs.append(_pack_of(group, end))
    return packs


def _pack_of(group: list[FinishedRun], end: dt.datetime) -> PackRun:
    seconds = max(0.0, (end - group[0].started_at).total_seconds())
    return PackRun(group[0].variant, len(group), seconds)
