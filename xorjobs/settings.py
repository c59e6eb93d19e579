"""One Settings class, read from ``XORJOBS_*`` environment variables (and ``.env``) once per process."""

from __future__ import annotations

import difflib
import logging
import os
import sys
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from urllib.parse import SplitResult, urlsplit

from pydantic import Field, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MIN_LEASE_PER_HEARTBEAT = 4.0
"""A lease lasts at least this many heartbeat intervals, so three beats in a row may be missed before
a live job is taken over. Measured (worker.heartbeat's ``longest_gap_seconds``): a pack of 500 nn jobs
x 10,001 steps on a 2-core machine with 4 extra busy loops (training 3.5x slower) had at most 1.54
intervals between two renewals (0.77 s at 0.5 s), 1.2 intervals without the extra load; 4 leaves a
2.6x margin over the worst measured."""

BROKER_SCHEMES = ("redis", "rediss")
"""The brokers xorjobs runs on and tests (the ``store`` extra's celery[redis]; the census reads Redis)."""
API_SCHEMES = ("http", "https")
"""What ``XORJOBS_API_URL`` may start with (the CLI and the Python client talk HTTP to the API)."""

ENV_PREFIX = "XORJOBS_"
ENV_FILE = ".env"
NOT_SETTINGS_PREFIX = "XORJOBS_TEST_"
"""Variables the test suite reads (service URLs, the fault seam's switch): not settings, no warning."""
NOT_SETTINGS = frozenset({"XORJOBS_FAULT"})
"""The fault seam's fault (``worker/faults.py``), read only under ``XORJOBS_TEST_FAULTS=1``."""


def _url_with_scheme(url: str, schemes: Iterable[str], kind: str, forms: str) -> SplitResult:
    """``url`` split, or a ValueError unless it parses (a port that is a number included) and its scheme is
    one of ``schemes``; the message names the scheme only (the URL may hold a password), then ``forms``."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises ValueError for a port that is not a number)
    except ValueError:
        raise ValueError(f"cannot be parsed as a URL; {forms}") from None
    if parts.scheme not in schemes:
        what = f"the scheme {parts.scheme + '://'!r}" if parts.scheme else "a URL without a scheme"
        raise ValueError(f"{what} is not {kind}; {forms}")
    return parts


def check_api_url(url: str, forms: str = "use http://HOST:PORT or https://…") -> None:
    """ValueError unless ``url`` is an http(s) URL with a host (XORJOBS_API_URL's rule, and Client(url)'s);
    the message names the scheme only (the URL may hold a password), then ``forms``."""
    parts = _url_with_scheme(url, API_SCHEMES, "an API URL", forms)
    if not parts.hostname or url != url.strip():
        raise ValueError(f"names no host (or has spaces around it); {forms}")


class Settings(BaseSettings):
    """Every knob of xorjobs. The README's configuration table lists these same names."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_file=ENV_FILE, extra="ignore")

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

    @field_validator("database_url")
    @classmethod
    def _store_url_is_supported(cls, url: str | None) -> str | None:
        """Refused here, where the variable is read, rather than as a SQLAlchemy traceback later."""
        if url is None:
            return None
        try:
            from xorjobs.store.engine import check_database_url
        except ModuleNotFoundError:  # the HTTP client's base install has no store to open
            return url
        from xorjobs.errors import InvalidSpec

        try:
            check_database_url(url)
        except InvalidSpec as error:
            raise ValueError(error.message) from None  # its text masks the password
        return url

    @field_validator("broker_url")
    @classmethod
    def _broker_url_is_supported(cls, url: str | None) -> str | None:
        """Refused at once: a URL kombu cannot use would otherwise leave every job waiting "to be
        published later". The message names the scheme only (the URL may hold a password)."""
        if not url:
            return url
        forms = "use redis://HOST:PORT/DB or rediss://…, or unset it for the embedded queue"
        parts = _url_with_scheme(url, BROKER_SCHEMES, "a supported broker", forms)
        # What urlsplit forgives and kombu reads otherwise (a traceback, or a host it cannot find and
        # "the broker publishes later"): spaces around it, "redis:/host", a database that is no number.
        if url != url.strip() or not url.startswith(f"{parts.scheme}://"):
            raise ValueError(f"cannot be parsed as a URL (spaces around it, or one slash?); {forms}")
        if parts.path not in ("", "/") and not _is_ascii_number(parts.path[1:]):
            raise ValueError(f"the database after the host must be a number (0, 1, …); {forms}")
        return url

    @field_validator("api_url")
    @classmethod
    def _api_url_is_http(cls, url: str | None) -> str | None:
        """Refused at once (exit 2): a URL httpx cannot send to was "cannot reach the API" (exit 4), an
        outage's code for a typo. The message names the scheme only (the URL may hold a password)."""
        if not url:
            return url
        check_api_url(url, "use http://HOST:PORT or https://…, or unset it to use the store here")
        return url

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
    def trains_in_process(self) -> bool:
        """No API and no broker (the embedded mode): no worker may be listening, so the command that
        queues jobs (``run``, ``retry``) trains them in its own process."""
        return self.embedded_queue and not self.api_url

    @property
    def queue_folder(self) -> Path:
        return (self.home / "queue").resolve()


def _is_ascii_number(text: str) -> bool:
    return text.isascii() and text.isdigit()


def setting_variables() -> frozenset[str]:
    return frozenset(ENV_PREFIX + name.upper() for name in Settings.model_fields)


def configuration_warnings(environ: Mapping[str, str], env_file: Path) -> list[str]:
    """What is set but cannot take effect: an ``XORJOBS_*`` name that is no setting (a typo, most
    likely) in the environment or ``.env``, and a ``.env`` line that does not parse. Warned, not
    refused: a variable of a newer or older xorjobs must not stop this one."""
    warnings = []
    names = [(name, "") for name in environ]
    if env_file.is_file():
        from dotenv.parser import parse_stream

        with env_file.open(encoding="utf-8", errors="replace") as stream:
            for binding in parse_stream(stream):
                if binding.error:
                    warnings.append(
                        f"{env_file} line {binding.original.line}: cannot be parsed as NAME=value; ignored"
                    )
                elif binding.key is not None:
                    names.append((binding.key, f" (in {env_file})"))
    known = setting_variables()
    for name, where in names:
        upper = name.upper()
        if not upper.startswith(ENV_PREFIX) or upper in known:
            continue
        if upper.startswith(NOT_SETTINGS_PREFIX) or upper in NOT_SETTINGS:
            continue
        close = difflib.get_close_matches(upper, sorted(known), n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        warnings.append(f"{name}{where} is not an xorjobs setting and is ignored{hint}")
    return warnings


@contextmanager
def _quiet_dotenv() -> Iterator[None]:
    """python-dotenv logs its own line for a line it cannot parse; ours (above) says which file."""
    dotenv_log = logging.getLogger("dotenv.main")
    level = dotenv_log.level
    dotenv_log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        dotenv_log.setLevel(level)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once, with a warning line on stderr for each variable or ``.env``
    line that cannot take effect. Tests that change the environment call ``cache_clear``."""
    # First: a mistyped name may be why a value below is refused.
    for warning in configuration_warnings(os.environ, Path(ENV_FILE)):
        print(f"warning: {warning}", file=sys.stderr)
    with _quiet_dotenv():
        return Settings()
