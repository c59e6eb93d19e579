"""One Settings class, read from ``XORJOBS_*`` environment variables (and ``.env``) once per process."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MIN_LEASE_PER_HEARTBEAT = 4.0
"""A lease lasts at least this many heartbeat intervals, so three beats in a row may be missed before
a live job is taken over. Measured (worker.heartbeat's ``longest_gap_seconds``): a pack of 500 nn jobs
x 10,001 steps on a 2-core machine with 4 extra busy loops (training 3.5x slower) had at most 1.54
intervals between two renewals (0.77 s at 0.5 s), 1.2 intervals without the extra load; 4 leaves a
2.6x margin over the worst measured."""


class Settings(BaseSettings):
    """Every knob of xorjobs. The README's configuration table lists these same names."""

    model_config = SettingsConfigDict(env_prefix="XORJOBS_", env_file=".env", extra="ignore")

    home: Path = Field(
        default=Path(".xorjobs"),
        description="Folder holding the default SQLite file and the embedded queue (like MLflow's ./mlruns).",
    )
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the store; default: a SQLite file in XORJOBS_HOME. "
        "Postgres: postgresql+psycopg://user@host/db",
    )
    broker_url: str | None = Field(
        default=None,
        description="Celery broker, e.g. redis://127.0.0.1:6379/0; unset: the embedded queue "
        "in XORJOBS_HOME.",
    )
    api_url: str | None = Field(default=None, description="When set, the CLI talks to this API over HTTP.")
    api_token: str | None = Field(
        default=None,
        description="When set, the API requires 'Authorization: Bearer <token>'; the CLI sends it.",
    )
    lease_seconds: float = Field(
        default=60.0,
        gt=0,
        description="A running job whose lease is this old is presumed dead and re-queued.",
    )
    heartbeat_seconds: float = Field(
        default=5.0, gt=0, description="How often a training job renews its lease."
    )
    reap_interval_seconds: float = Field(
        default=10.0, gt=0, description="How often each worker looks for expired leases and unpublished jobs."
    )
    max_attempts: int = Field(
        default=3, ge=1, description="Attempts before a job that keeps dying is failed."
    )
    progress_seconds: float = Field(
        default=2.0, gt=0, description="How often a running job writes its new costs (so progress shows)."
    )
    pack_size: int = Field(
        default=512,
        ge=1,
        le=5000,
        description="Most queued jobs of one variant and device a worker trains together as one packed "
        "run (on the CPU bit-identical to solo); 1 turns packing off.",
    )
    job_time_limit_seconds: int = Field(
        default=6 * 3600, gt=0, description="Hard time limit of one job; its worker child is killed past it."
    )
    visibility_timeout_seconds: int = Field(
        default=24 * 3600,
        gt=0,
        description="Redis visibility timeout; far above the longest job, since leases (not "
        "redelivery) recover jobs.",
    )

    @field_validator("home", mode="before")
    @classmethod
    def _home_is_a_folder(cls, home: object) -> object:
        """An empty value would put the store in the working directory, a file would fail later."""
        if isinstance(home, str | Path) and str(home).strip() == "":
            raise ValueError("is empty; unset it for the default ./.xorjobs, or name a folder")
        if isinstance(home, str | Path) and Path(home).exists() and not Path(home).is_dir():
            raise ValueError(f"{str(home)!r} is a file, not a folder")
        return home

    @field_validator("heartbeat_seconds")
    @classmethod
    def _lease_outlasts_missed_beats(cls, heartbeat: float, info: ValidationInfo) -> float:
        lease = info.data.get("lease_seconds")
        if isinstance(lease, float) and lease < MIN_LEASE_PER_HEARTBEAT * heartbeat:
            raise ValueError(
                f"{heartbeat:g} s is more than 1/{MIN_LEASE_PER_HEARTBEAT:g} of XORJOBS_LEASE_SECONDS "
                f"({lease:g} s): a busy worker's live jobs would be taken over"
            )
        return heartbeat

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.home / 'xorjobs.db').resolve()}"

    @property
    def embedded_queue(self) -> bool:
        """The queue is embedded exactly when no broker URL is set (issue 2, section 7)."""
        return not self.broker_url

    @property
    def queue_folder(self) -> Path:
        return (self.home / "queue").resolve()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once. Tests that change the environment call ``cache_clear``."""
    return Settings()
