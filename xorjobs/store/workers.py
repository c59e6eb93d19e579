"""The fleet in the store: each worker start registers a row, beats on it, and marks it stopped at exit.

Why the store and not a broadcast (``celery inspect``): every host already reaches the store, a row
outlives the worker that wrote it (a worker killed with SIGKILL still shows, as lost), and the API and
the CLI read it without a broker round trip. Times are the database's clock (``store.clock``), as for
leases: a worker whose own clock is off still beats on time, and the reader's clock never decides.

One rule says whether a worker is alive: ``state_of``. A row stops being live when its last beat is
older than ``LOST_AFTER_HEARTBEATS`` of *its own* beat intervals (each row records its interval, so a
reader with other settings judges every worker by the cadence it promised).
"""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import delete, select, update

from xorjobs.store.clock import db_now, db_now_plus
from xorjobs.store.engine import read_session, write_session
from xorjobs.store.tables import Job, JobState, Worker

LOST_AFTER_HEARTBEATS = 3.0
"""A worker whose last beat is older than this many of its beat intervals shows as lost: two missed
beats are a busy machine or a store blip, three in a row are a dead or cut-off worker."""

PRUNE_AFTER = dt.timedelta(days=7)
"""Rows of workers not heard of for this long are deleted when a worker starts (each start adds one row,
so pruning at start keeps the table proportional to the recent restarts). A week keeps last weekend's
crashes visible on Monday."""

_SCOPE_MARK = ";scope="  # how ``worker.liveness.holder_name`` appends the scope to a job's holder


class WorkerState(StrEnum):
    LIVE = "live"
    LOST = "lost"  # no beat for LOST_AFTER_HEARTBEATS intervals: killed, frozen, or cut off
    STOPPED = "stopped"  # shut down cleanly


@dataclass(frozen=True)
class WorkerIdentity:
    """What a worker says about itself once, at start (picklable: it travels to the recovery process)."""

    instance_id: str
    node: str
    host: str
    pid: int
    scope: str | None
    queues: tuple[str, ...]
    engines: dict[str, str]
    version: str
    heartbeat_seconds: float


def state_of(
    last_heartbeat: dt.datetime, stopped_at: dt.datetime | None, heartbeat_seconds: float, now: dt.datetime
) -> WorkerState:
    """The one rule: stopped if it said so, lost past LOST_AFTER_HEARTBEATS of its intervals, else live.
    ``now`` is the database's time (``database_now``), never the reader's."""
    if stopped_at is not None:
        return WorkerState.STOPPED
    silent = (now - last_heartbeat).total_seconds()
    return WorkerState.LOST if silent > LOST_AFTER_HEARTBEATS * heartbeat_seconds else WorkerState.LIVE


def register_worker(url: str, identity: WorkerIdentity) -> None:
    """Write the worker's row (again, when its recovery process restarts: the start time is kept)."""
    with write_session(url) as session:
        row = session.get(Worker, identity.instance_id)
        if row is not None:
            session.execute(
                update(Worker)
                .where(Worker.instance_id == identity.instance_id)
                .values(last_heartbeat=db_now(), stopped_at=None)
            )
            return
        session.add(
            Worker(
                instance_id=identity.instance_id,
                node=identity.node,
                host=identity.host,
                pid=identity.pid,
                scope=identity.scope,
                queues=",".join(identity.queues),
                engines_json=json.dumps(identity.engines, sort_keys=True),
                version=identity.version,
                heartbeat_seconds=identity.heartbeat_seconds,
                started_at=db_now(),
                last_heartbeat=db_now(),
            )
        )


def beat(url: str, instance_id: str) -> bool:
    """Renew the worker's last heartbeat; False when its row is gone (pruned, or a wiped store)."""
    with write_session(url) as session:
        result = session.execute(
            update(Worker)
            .where(Worker.instance_id == instance_id, Worker.stopped_at.is_(None))
            .values(last_heartbeat=db_now())
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]


def mark_stopped(url: str, instance_id: str) -> None:
    with write_session(url) as session:
        session.execute(
            update(Worker)
            .where(Worker.instance_id == instance_id)
            .values(stopped_at=db_now(), last_heartbeat=db_now())
        )


def prune_workers(url: str, older_than: dt.timedelta = PRUNE_AFTER) -> int:
    """Delete the rows of workers silent for longer than ``older_than``; returns how many."""
    with write_session(url) as session:
        result = session.execute(
            delete(Worker).where(Worker.last_heartbeat < db_now_plus(-older_than.total_seconds()))
        )
        return int(result.rowcount)  # type: ignore[attr-defined]


def database_now(url: str) -> dt.datetime:
    with read_session(url) as session:
        now = session.execute(select(db_now())).scalar_one()
    assert isinstance(now, dt.datetime)
    return now


def list_workers(url: str, include_stopped: bool = False) -> list[dict[str, Any]]:
    """The workers, newest start first, JSON-ready; stopped ones only with ``include_stopped``.

    ``current`` lists what each of its training processes holds now, as ``{"leader", "size"}``: read from
    the running jobs, whose ``worker`` column names the training process (``node/pid;scope=...``), so the
    training processes write nothing extra for it.
    """
    with read_session(url) as session:
        now = session.execute(select(db_now())).scalar_one()
        rows = session.scalars(select(Worker).order_by(Worker.started_at.desc(), Worker.instance_id)).all()
        running = session.execute(
            select(Job.id, Job.worker, Job.started_at, Job.position).where(
                Job.state == JobState.RUNNING, Job.worker.is_not(None)
            )
        ).all()
    assert isinstance(now, dt.datetime)
    holders: dict[str, list[tuple[dt.datetime | None, int, str]]] = defaultdict(list)
    for job_id, holder, started_at, position in running:
        if holder is not None:
            holders[holder].append((started_at, position, job_id))
    packs = _packs_by_process(holders)
    listed: list[dict[str, Any]] = []
    claimed: set[tuple[str, str | None]] = set()
    for row in rows:
        state = state_of(row.last_heartbeat, row.stopped_at, row.heartbeat_seconds, now)
        key = (row.node, row.scope)
        # A node name is unique per start (it holds the starting process's pid): the newest row of a
        # (node, scope) is the one that holds its jobs, and only while it has not stopped.
        current = packs.get(key, []) if state is not WorkerState.STOPPED and key not in claimed else []
        claimed.add(key)
        if state is WorkerState.STOPPED and not include_stopped:
            continue
        listed.append(
            {
                "instance_id": row.instance_id,
                "node": row.node,
                "host": row.host,
                "pid": row.pid,
                "scope": row.scope,
                "queues": [queue for queue in row.queues.split(",") if queue],
                "engines": json.loads(row.engines_json),
                "version": row.version,
                "state": state.value,
                "started_at": row.started_at.isoformat(),
                "last_heartbeat": row.last_heartbeat.isoformat(),
                "seconds_since_heartbeat": round(max(0.0, (now - row.last_heartbeat).total_seconds()), 3),
                "heartbeat_seconds": row.heartbeat_seconds,
                "stopped_at": row.stopped_at.isoformat() if row.stopped_at else None,
                "current": current,
            }
        )
    return listed


def _packs_by_process(
    holders: dict[str, list[tuple[dt.datetime | None, int, str]]],
) -> dict[tuple[str, str | None], list[dict[str, Any]]]:
    """(node, scope) -> one ``{"leader", "size"}`` per training process: a process trains one job or one
    pack at a time, and its first-claimed member is the leader."""
    by_worker: dict[tuple[str, str | None], list[dict[str, Any]]] = defaultdict(list)
    for holder, members in holders.items():
        base, mark, scope = holder.partition(_SCOPE_MARK)
        node = base.rpartition("/")[0]
        first = min(
            members, key=lambda member: (member[0] or dt.datetime.max.replace(tzinfo=dt.UTC), member[1])
        )
        by_worker[(node, scope if mark else None)].append({"leader": first[2], "size": len(members)})
    for packs in by_worker.values():
        packs.sort(key=lambda pack: (-pack["size"], pack["leader"]))
    return by_worker


def serves_queue(url: str, queue: str) -> bool:
    """Whether a live worker (``state_of``) consumes ``queue``, as the registry says: what a request for
    that queue (``POST /jobs/{id}/verify``) checks before it waits for an answer nobody would give."""
    with read_session(url) as session:
        now = session.execute(select(db_now())).scalar_one()
        rows = session.execute(
            select(Worker.queues, Worker.last_heartbeat, Worker.stopped_at, Worker.heartbeat_seconds).where(
                Worker.stopped_at.is_(None)
            )
        ).all()
    return any(
        queue in queues.split(",") and state_of(last, stopped, seconds, now) is WorkerState.LIVE
        for queues, last, stopped, seconds in rows
    )


def worker_counts(url: str) -> dict[WorkerState, int]:
    """How many workers are in each state (every state present, zeros included)."""
    with read_session(url) as session:
        now = session.execute(select(db_now())).scalar_one()
        rows = session.execute(
            select(Worker.last_heartbeat, Worker.stopped_at, Worker.heartbeat_seconds)
        ).all()
    counts = dict.fromkeys(WorkerState, 0)
    for last_heartbeat, stopped_at, heartbeat_seconds in rows:
        counts[state_of(last_heartbeat, stopped_at, heartbeat_seconds, now)] += 1
    return counts
