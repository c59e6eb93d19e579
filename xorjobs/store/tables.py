"""The tables (typed SQLAlchemy 2 ORM): sweeps, jobs, cost curves, workers, recovery events, verifications."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    BigInteger,
    Boolean,
    Double,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.ext.hybrid import hybrid_property
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import DateTime, TypeDecorator

from xorjobs.defaults import TERMINAL_STATES, JobState

__all__ = [
    "TERMINAL_STATES",
    "Base",
    "CostCurve",
    "Job",
    "JobState",
    "RecoveryEvent",
    "Sweep",
    "UtcDateTime",
    "Verification",
    "Worker",
]


class UtcDateTime(TypeDecorator[dt.datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite keeps no time zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: object) -> dt.datetime | None:
        return value.astimezone(dt.UTC) if value is not None else None

    def process_result_value(self, value: dt.datetime | None, dialect: object) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


class Base(DeclarativeBase):
    pass


class Sweep(Base):
    __tablename__ = "sweeps"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    # The sweep as submitted (JSON), so `retry` and `show` need nothing else.
    spec_json: Mapped[str] = mapped_column(Text)
    job_count: Mapped[int] = mapped_column(Integer)
    idempotency_key: Mapped[str | None] = mapped_column(String(200), unique=True)


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        UniqueConstraint("sweep_id", "position", name="uq_jobs_sweep_position"),
        Index("ix_jobs_state", "state"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    sweep_id: Mapped[str] = mapped_column(ForeignKey("sweeps.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    variant: Mapped[str] = mapped_column(String(20))
    seed: Mapped[int] = mapped_column(BigInteger)
    lr: Mapped[float] = mapped_column(Double)
    steps: Mapped[int] = mapped_column(Integer)
    log_every: Mapped[int] = mapped_column(Integer)
    device: Mapped[str] = mapped_column(String(10))
    queue: Mapped[str] = mapped_column(String(20))
    state: Mapped[str] = mapped_column(String(20), default=JobState.QUEUED)
    # Fencing token: bumped by every claim; every write of an attempt is conditional on it.
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    # Attempts before this one that no longer count against max_attempts (set by `retry`); the
    # attempt counter itself never goes back, or an old attempt's fencing token could match again.
    attempts_forgiven: Mapped[int] = mapped_column(Integer, default=0)
    lease_expires_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    # Outbox: NULL until the broker accepted the job's message (issue 3: the DB is the source of truth).
    published_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    started_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    error: Mapped[str | None] = mapped_column(Text)
    worker: Mapped[str | None] = mapped_column(String(200))
    device_name: Mapped[str | None] = mapped_column(String(200))
    torch_version: Mapped[str | None] = mapped_column(String(50))
    cpu_capability: Mapped[str | None] = mapped_column(String(50))
    # The engine that trained it (``models.engine.Engine.name``); NULL on rows stored before revision 0004.
    engine: Mapped[str | None] = mapped_column(String(20))
    # The trained model's cost (the seed's criterion on the final hypothesis; NULL on rows stored before
    # revision 0002) and the cost at the last logged step; each a double plus its kind (``floats``).
    final_cost: Mapped[float | None] = mapped_column(Double)
    final_cost_kind: Mapped[int | None] = mapped_column(SmallInteger)
    last_logged_cost: Mapped[float | None] = mapped_column(Double)
    last_logged_cost_kind: Mapped[int | None] = mapped_column(SmallInteger)
    # JSON lists of 4 numbers, non-finite values as "nan"/"inf" strings.
    hypothesis_json: Mapped[str | None] = mapped_column(Text)
    predicted_json: Mapped[str | None] = mapped_column(Text)
    accuracy: Mapped[float | None] = mapped_column(Double)
    # Early stopping (revision 0005): the sweep's rule, copied like steps (a pack shares one rule), and
    # where and why the job stopped, written with the result. steps_trained is NULL on rows stored
    # before 0005 (they trained all their steps); stopped_at_step and stop_reason are NULL for a job
    # that ran all its steps.
    stop_below: Mapped[float | None] = mapped_column(Double)
    stop_when_solved: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    steps_trained: Mapped[int | None] = mapped_column(Integer)
    stopped_at_step: Mapped[int | None] = mapped_column(Integer)
    stop_reason: Mapped[str | None] = mapped_column(String(20))

    @hybrid_property
    def attempts_used(self) -> int:
        """Attempts that count against ``max_attempts`` (``retry`` forgives the earlier ones); the one
        rule, usable on a loaded job and in a query (``Job.attempts_used >= max_attempts``)."""
        return self.attempt - self.attempts_forgiven


class CostCurve(Base):
    """A job's logged costs, all in one value (revision 0007; the bytes are ``curve_codec``'s).

    One row per job, written by the attempt that owns the job (every write is fenced on it): a newer
    attempt's first write replaces an older attempt's curve, and the same attempt's later writes merge
    into it per step. ``points`` and ``last_step`` repeat what the curve holds, so progress, the data
    version and housekeeping's counts stay aggregates the database computes without decoding a curve."""

    __tablename__ = "cost_curves"

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    attempt: Mapped[int] = mapped_column(Integer)
    points: Mapped[int] = mapped_column(Integer)
    last_step: Mapped[int] = mapped_column(Integer)
    curve: Mapped[bytes] = mapped_column(LargeBinary)


class Worker(Base):
    """One start of ``xorjobs worker``: who it is, what it serves, and when it last said it was alive
    (``xorjobs.store.workers``). A restart is a new row: ``instance_id`` is a fresh uuid4 per start."""

    __tablename__ = "workers"

    instance_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    node: Mapped[str] = mapped_column(String(200))  # Celery's node name, ``cpu-<pid>@host``
    host: Mapped[str] = mapped_column(String(200))
    pid: Mapped[int] = mapped_column(Integer)
    # Where the pid means something (``worker.liveness``): a pid alone does not name one process.
    scope: Mapped[str | None] = mapped_column(String(40))
    queues: Mapped[str] = mapped_column(String(200))  # comma-separated
    engines_json: Mapped[str] = mapped_column(Text)  # {"nn": "exact", ...}: what each variant trains on
    version: Mapped[str] = mapped_column(String(50))
    # Its own beat interval: the lost rule compares each worker with its own cadence, not the reader's.
    heartbeat_seconds: Mapped[float] = mapped_column(Double)
    started_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)  # database clock, as the heartbeats
    last_heartbeat: Mapped[dt.datetime] = mapped_column(UtcDateTime, index=True)
    stopped_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)


class RecoveryEvent(Base):
    """How many times the workers' recovery did each thing, summed over every host (one row per action,
    bumped in the same transaction as the action itself, so a rolled-back action is never counted)."""

    __tablename__ = "recovery_events"

    action: Mapped[str] = mapped_column(String(40), primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger, default=0)


class Verification(Base):
    """A request of ``POST /jobs/{id}/verify`` and, once a worker re-ran the job, its report (issue 12 §6).

    The API (which never imports torch) writes the request and waits for ``answered_at``; the worker that
    took ``xorjobs.verify_job`` writes the report (or the error and its HTTP status). Only the store and
    the broker are shared, so API and worker may be on different hosts."""

    __tablename__ = "verifications"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    device: Mapped[str | None] = mapped_column(String(10))
    requested_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    answered_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    report_json: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    error_status: Mapped[int | None] = mapped_column(SmallInteger)
