"""``xorjobs.Client``: submit sweeps and read what they found, from Python (a script, a notebook).

One client, two transports (``xorjobs.client.protocol.Backend``): over HTTP to an API
(``Client(url, token)``, or ``XORJOBS_API_URL``/``XORJOBS_API_TOKEN``), or in this process on the
configured store (``Client()``: the embedded SQLite file in ``XORJOBS_HOME`` by default). The CLI gets its
backend from here too (``backend_for``), so both speak through the same code.

The base install (``pip install xorjobs``) has the HTTP client only: the in-process mode imports the store
and Celery when it is first used, and training in this process (the embedded mode's ``wait``) imports torch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, ValidationError

from xorjobs.analysis import DEFAULT_THRESHOLD
from xorjobs.client.http import HttpBackend
from xorjobs.client.protocol import Backend, Json
from xorjobs.client.records import Job, Summary, SweepInfo, SweepStatus, VerifyReport
from xorjobs.errors import InvalidSpec, got
from xorjobs.filters import DEFAULT_ORDER, JobFilter, JobOrder, SweepFilter, seed_ranges
from xorjobs.settings import Settings, check_api_url, get_settings
from xorjobs.spec import SweepSpec, validate_spec

if TYPE_CHECKING:
    import pandas

PANDAS_MISSING = (
    "results_frame() needs pandas, which the base install leaves out: pip install 'xorjobs[pandas]'"
)
WAIT_INTERVAL_SECONDS = 0.5
"""How often ``wait`` asks for the sweep's state (0.25 s while this process trains it)."""


def backend_for(settings: Settings) -> Backend:
    """HTTP when ``XORJOBS_API_URL`` is set; otherwise in-process, through the same service code.

    In-process, the store is checked by each command when it first touches it: a read on a missing store
    says so and creates nothing, and only ``submit`` creates the embedded default store (issue 10, §2).
    """
    if settings.api_url:
        return HttpBackend(settings.api_url, settings.api_token)
    # Imported here: the store and Celery take ~0.5 s to import, which an HTTP client never needs.
    from xorjobs.service import Service

    return Service(settings, creates_embedded_store=True)


def spec_from(
    source: SweepSpec | str | Path | Mapping[str, Any] | None, fields: Mapping[str, Any]
) -> SweepSpec:
    """The sweep of ``submit``: a ``SweepSpec``, a sweep file's path, or a mapping of the sweep file's keys,
    with keyword ``fields`` overriding those keys (as flags beside ``-f`` do). Sweep files and sampled
    values (``lrs={"sample": "log_uniform", ...}``) follow ``xorjobs.sweep_file``, as the CLI does."""
    if isinstance(source, SweepSpec):
        source = source.model_dump(exclude_none=True)
    try:
        from xorjobs import sweep_file
    except ImportError:  # sweep_file arrived with issue 12 §1; plain keys validate without it
        if isinstance(source, str | Path):
            raise
        return validate_spec({**(source or {}), **fields})
    if isinstance(source, str | Path):
        return sweep_file.spec_from_document(sweep_file.load_sweep_document(source), dict(fields))
    return sweep_file.spec_from_document({**(source or {}), **fields})


class Client:
    """Submit sweeps and read them, over HTTP (``Client(url, token)``) or in this process (``Client()``).

    ``Client()`` reads the settings (``XORJOBS_*``, ``./.env``): with ``XORJOBS_API_URL`` it talks to that
    API, otherwise it works on the configured store here; ``settings=`` passes a ``Settings`` built in code.
    In the embedded mode (no API, no broker) ``sweep.wait()`` trains the sweep in this process, as
    ``xorjobs run`` does; with a broker, workers train it and ``wait`` only watches.
    """

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        settings: Settings | None = None,
        backend: Backend | None = None,
    ) -> None:
        self.settings = settings or get_settings()
        if backend is not None:
            self.backend = backend
        elif url is not None:
            try:  # a typo is bad input (exit 2's InvalidSpec), not an unreachable API
                check_api_url(url)
            except ValueError as error:
                raise InvalidSpec("url", str(error)) from None
            self.backend = HttpBackend(url, token)
        else:
            try:
                self.backend = backend_for(self.settings)
            except ModuleNotFoundError as error:  # the base install: HTTP only
                raise ModuleNotFoundError(
                    f"Client() without an API URL works on the store in this process, which needs the "
                    f"{error.name!r} package this install lacks: pip install 'xorjobs[all]' (or "
                    "Client(url, token), or set XORJOBS_API_URL)",
                    name=error.name,
                ) from None
            if token is not None and isinstance(self.backend, HttpBackend):
                self.backend = HttpBackend(str(self.settings.api_url), token)

    @property
    def over_http(self) -> bool:
        return isinstance(self.backend, HttpBackend)

    @property
    def trains_here(self) -> bool:
        """Whether ``wait`` trains in this process (the embedded mode: no API, no broker)."""
        return not self.over_http and self.settings.trains_in_process

    def __repr__(self) -> str:
        if isinstance(self.backend, HttpBackend):
            return f"Client({self.backend.base_url!r})"

        return f"Client(store={self.settings.resolved_database_url!r})"

    # --- sweeps --------------------------------------------------------------------------------------

    def submit(
        self,
        sweep: SweepSpec | str | Path | Mapping[str, Any] | None = None,
        /,
        *,
        key: str | None = None,
        **fields: Any,
    ) -> SweepHandle:
        """Submit a sweep: keyword arguments are the sweep file's keys (``variants=["nn"], seeds=[1, 2],
        lrs=[0.5, 1.0], steps=2000``...), or pass a sweep file's path or a ``SweepSpec`` (keywords then
        override its keys). ``key`` is an idempotency key: submitting again with it returns the same sweep.
        Returns the sweep's handle; in the embedded mode, ``handle.wait()`` trains it."""
        spec = spec_from(sweep, fields)
        submitted = self.backend.submit(spec, key)
        handle = SweepHandle(self, str(submitted["sweep_id"]))
        handle.created = bool(submitted.get("created", True))
        handle.warnings = tuple(
            warning
            for warning in submitted.get("warnings", [])
            if not (self.trains_here and warning.startswith("no live worker"))  # wait() trains it here
        )
        return handle

    def sweep(self, sweep_id: str | None = None) -> SweepHandle:
        """The handle of a sweep already submitted (no id: the latest sweep). An id is not checked here: an
        unknown one raises NotFound on the handle's first use (``.status()``, ``.results()``, ...)."""
        if sweep_id is None:
            sweep_id = str(self.backend.status(None)["sweep_id"])
        return SweepHandle(self, sweep_id)

    def sweeps(
        self, *, limit: int = 50, name: str | None = None, states: Iterable[str] = ()
    ) -> list[SweepInfo]:
        """The sweeps, newest first; ``name``: the name contains it (any case); ``states``: the sweeps
        with a job in one of these states."""
        sweep_filter = _checked(SweepFilter, {"name": name, "states": tuple(states)})
        return [SweepInfo.from_json(sweep) for sweep in self.backend.sweeps(limit, sweep_filter)["sweeps"]]

    # --- jobs ----------------------------------------------------------------------------------------

    def job(self, job_id: str) -> Job:
        return Job.from_json(self.backend.job(job_id))

    def costs(self, job_id: str) -> list[tuple[int, float]]:
        """One job's logged ``(step, cost)`` pairs."""
        job = Job.from_json({**self.backend.job(job_id), "costs": self.backend.costs(job_id)["costs"]})
        return list(job.costs or ())

    def cancel(self, sweep_or_job_id: str) -> list[str]:
        """Cancel queued and running jobs (of a sweep, or one job); returns the ids cancelled."""
        return [str(job_id) for job_id in self.backend.cancel(sweep_or_job_id)["cancelled"]]

    def verify(self, job_id: str, device: str | None = None, timeout: float | None = None) -> VerifyReport:
        """Re-run a stored job solo and compare it with the store (``xorjobs verify``): in this process
        (in-process mode: needs the worker extra's torch), or on a worker of the API's fleet (HTTP), which
        waits ``timeout`` seconds for the worker (the API's default when None; unused in process)."""
        return VerifyReport.from_json(self.backend.verify(job_id, device, timeout))


class SweepHandle:
    """One sweep: its state, its results, and what to do with it. Every call asks the store or the API
    anew (a handle holds nothing but the id)."""

    def __init__(self, client: Client, sweep_id: str) -> None:
        self.client = client
        self.id = sweep_id
        self.created = True
        self.warnings: tuple[str, ...] = ()

    def __repr__(self) -> str:
        return f"<sweep {self.id}>"

    def status(self, **filters: Any) -> SweepStatus:
        """State counts (of the whole sweep) and the jobs (those the filters keep: ``states``,
        ``variants``, ``lrs``, ``seeds``)."""
        return SweepStatus.from_json(self.client.backend.status(self.id, job_filter(**filters)))

    def wait(self, progress: bool = True, *, timeout: float | None = None) -> SweepStatus:
        """Block until every job finished; a progress bar on stderr when ``progress``.

        In the embedded mode this process trains the sweep meanwhile (Ctrl-C hands the running jobs back
        to the queue); otherwise workers do and this only watches (``timeout``: TimeoutError after that
        many seconds, the sweep left running)."""
        from xorjobs.client.progress import poll_until_done

        if self.client.trains_here:
            if timeout is not None:
                raise ValueError("timeout: the embedded mode trains the sweep in this process until it ends")
            # Only here: training needs the store, Celery and torch (not on the base install).
            from xorjobs.worker.embedded_training import train_queued_jobs

            def watch(fetch: Callable[[], Json]) -> Json:
                return poll_until_done(fetch, progress=progress, interval=WAIT_INTERVAL_SECONDS / 2)

            train_queued_jobs(self.client.settings, self.id, watch)
            return self.status()

        def fetch() -> Json:
            return self.client.backend.status(self.id)

        poll_until_done(fetch, progress=progress, interval=WAIT_INTERVAL_SECONDS, timeout=timeout)
        return self.status()

    def results(
        self, *, sort: str | None = None, descending: bool = False, limit: int | None = None, **filters: Any
    ) -> list[Job]:
        """Every job (or those the filters keep) with its results and logged costs; ``sort``:
        final_cost, accuracy, seed or lr (``results(sort="final_cost", limit=10)``: the ten best)."""
        order = (
            _checked(JobOrder, {"sort": sort, "descending": descending, "limit": limit})
            if sort or limit is not None  # limit=0 is refused, not "no limit"
            else DEFAULT_ORDER
        )
        answer = self.client.backend.results(self.id, job_filter(**filters), order)
        return [Job.from_json(job) for job in answer["jobs"]]

    def summary(
        self, by: Iterable[str] | str = ("variant",), threshold: float = DEFAULT_THRESHOLD, **filters: Any
    ) -> Summary:
        """Per group of ``by`` (variant, lr, seed, device): jobs, solve rate with its Wilson interval,
        final cost, steps to converge, diverged jobs (``xorjobs results --by``)."""
        fields = [by] if isinstance(by, str) else list(by)
        return Summary.from_json(
            self.client.backend.summary(self.id, fields, threshold, job_filter(**filters))
        )

    def cancel(self) -> list[str]:
        """Cancel the sweep's queued and running jobs; returns their ids."""
        return self.client.cancel(self.id)

    def retry(self, failed_only: bool = False) -> list[str]:
        """Re-queue the jobs that did not succeed (``failed_only``: not the cancelled ones); returns their
        ids. ``wait()`` then trains them (embedded mode) or watches the workers do."""
        return [str(job_id) for job_id in self.client.backend.retry(self.id, failed_only)["retried"]]

    def results_frame(self, **filters: Any) -> pandas.DataFrame:
        """The results as a pandas DataFrame, one row per job (its ``costs`` as a list column).

        Needs pandas (``pip install 'xorjobs[pandas]'``)."""
        try:
            import pandas
        except ImportError:
            raise ImportError(PANDAS_MISSING) from None
        rows = []
        for job in self.results(**filters):
            row = {name: getattr(job, name) for name in job.__dataclass_fields__ if name != "extra"}
            rows.append({**row, **job.extra})
        return pandas.DataFrame(rows)

    to_pandas = results_frame


def job_filter(
    *,
    states: Iterable[str] = (),
    variants: Iterable[str] = (),
    lrs: Iterable[float] = (),
    seeds: Iterable[int] = (),
) -> JobFilter:
    """The filter of ``status``/``results``/``summary`` from plain Python values."""
    return _checked(
        JobFilter,
        {
            "states": tuple(states),
            "variants": tuple(variants),
            "lrs": tuple(_number(lr, f"lrs.{index}") for index, lr in enumerate(lrs)),
            "seed_ranges": seed_ranges(_seeds(seeds)),
        },
    )


_Model = TypeVar("_Model", bound=BaseModel)


def _checked(model: type[_Model], fields: dict[str, Any]) -> _Model:
    """A filter or order from the client's keywords; a bad value is InvalidSpec naming the keyword, one
    line, as the CLI's errors are (pydantic's ValidationError is several lines and names its own fields)."""
    try:
        return model.model_validate(fields)
    except ValidationError as error:
        first = error.errors()[0]
        location = [str(part) for part in first["loc"]] or ["filter"]
        if location[0] == "seed_ranges":  # the keyword is seeds; its ranges' inner indexes mean nothing here
            location = ["seeds"]
        value = first.get("input")
        shown = f" {got(value)}" if isinstance(value, int | float | str) else ""
        raise InvalidSpec(".".join(location), first["msg"].removeprefix("Value error, ") + shown) from None


def _seeds(seeds: Iterable[Any]) -> list[int]:
    listed = list(seeds)
    for index, seed in enumerate(listed):
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise InvalidSpec(f"seeds.{index}", f"{seed!r} is not an integer")
    return listed


def _number(value: Any, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise InvalidSpec(field, f"{value!r} is not a number")
    try:
        return float(value)
    except ValueError:
        raise InvalidSpec(field, f"{value!r} is not a number") from None
