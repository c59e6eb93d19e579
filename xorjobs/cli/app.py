"""The ``xorjobs`` command line: submit sweeps, watch them, read results, and start the services."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.markup import escape

# typer 0.29 ships its own copy of click: its usage errors are these classes, not click's.
from typer._click.exceptions import ClickException, NoArgsIsHelpError, UsageError

import xorjobs
from xorjobs.cli import render
from xorjobs.cli.extras import missing_extra_message
from xorjobs.cli.filter_options import (
    Descending,
    FilterLrs,
    FilterSeeds,
    FilterVariants,
    Limit,
    NamePart,
    Sort,
    States,
    SweepStates,
    job_filter,
    job_order,
    shown_of,
    sweep_filter,
)
from xorjobs.cli.help_format import usage_error_line, use_click_style_types
from xorjobs.cli.sweep_options import (
    Device,
    LogEvery,
    Lrs,
    Name,
    SamplerSeed,
    Seeds,
    Steps,
    StopBelow,
    StopWhenSolved,
    SweepFile,
    Variants,
    spec_from_command_line,
)
from xorjobs.cli.waiting import wait_or_leave_running
from xorjobs.client import Backend, backend_for
from xorjobs.defaults import DEFAULT_STEPS, SWEEP_ID_PREFIX
from xorjobs.errors import NotFound, XorjobsError
from xorjobs.settings import get_settings
from xorjobs.spec import check_idempotency_key

use_click_style_types()
app = typer.Typer(
    name="xorjobs",
    help="Queued training jobs for the XOR MLP experiments (the boostcourse Lab 08-2 seed).\n\n"
    "Without XORJOBS_API_URL, commands work in-process on the store in XORJOBS_HOME (default ./.xorjobs).",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

Json = Annotated[bool, typer.Option("--json", help='Print JSON (non-finite numbers as "nan"/"inf")')]
Csv = Annotated[bool, typer.Option("--csv", help="Print CSV")]
SweepArg = Annotated[str | None, typer.Argument(help="Sweep id [default: the latest sweep]")]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"xorjobs {xorjobs.__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit")
    ] = False,
) -> None:
    pass


def _backend() -> Backend:
    return backend_for(get_settings())


def _print_warnings(result: dict[str, Any]) -> None:
    for warning in result.get("warnings", []):
        render.stderr.print(f"[yellow]warning:[/] {escape(warning)}")


def _exit_for(status: dict[str, Any]) -> None:
    """Exit 1 when the command worked but some jobs failed or were cancelled."""
    counts = status["counts"]
    if counts.get("failed", 0) or counts.get("cancelled", 0):
        raise typer.Exit(1)


@app.command()
def submit(
    ctx: typer.Context,
    sweep_file: SweepFile = None,
    variant: Variants = None,
    seed: Seeds = None,
    lr: Lrs = None,
    device: Device = "cpu",
    steps: Steps = str(DEFAULT_STEPS),
    log_every: LogEvery = None,
    name: Name = None,
    stop_below: StopBelow = None,
    stop_when_solved: StopWhenSolved = False,
    sampler_seed: SamplerSeed = None,
    key: Annotated[
        str | None,
        typer.Option("--key", help="Idempotency key: submitting again with it returns the same sweep"),
    ] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Show progress until the sweep finishes")] = False,
    as_json: Json = False,
) -> None:
    """Submit a sweep (variant × seed × lr) to the queue; one job per combination.

    -f FILE reads the whole sweep from a YAML file (`xorjobs spec SWEEP_ID` prints one); a sweep flag
    given beside it replaces that key. --lr loguniform:LOW:HIGH:COUNT and --seed random:COUNT draw the
    values once, now, from --sampler-seed (generated and stored when not given).
    """
    spec = spec_from_command_line(ctx)  # the sweep flags above, read from ctx as `run`/`submit` share them
    if key is not None:
        check_idempotency_key(key, "--key")  # one rule, embedded or over HTTP
    backend = _backend()
    result = backend.submit(spec, key)
    _print_warnings(result)
    created = bool(result.get("created", True))
    payload = {"sweep_id": result["sweep_id"], "created": created, "jobs": result["jobs"]}
    if wait:
        status = wait_or_leave_running(lambda: backend.status(result["sweep_id"]), str(result["sweep_id"]))
        payload = {"sweep_id": status["sweep_id"], "created": created, "jobs": status["jobs"]}
    if as_json:
        render.print_json(payload)
    else:
        verb = "submitted" if created else "already submitted with this key:"
        sweep_id = render.safe(result["sweep_id"])
        render.stdout.print(f"{verb} sweep [bold]{sweep_id}[/] with {len(result['jobs'])} job(s)")
        render.print_jobs(payload["jobs"], sweep_id=str(result["sweep_id"]))
        if wait:
            render.stdout.print(render.counts_line(status["counts"]))  # the summary line `run` ends with
    if wait:
        _exit_for(status)


@app.command()
def run(
    ctx: typer.Context,
    sweep_file: SweepFile = None,
    variant: Variants = None,
    seed: Seeds = None,
    lr: Lrs = None,
    device: Device = "cpu",
    steps: Steps = str(DEFAULT_STEPS),
    log_every: LogEvery = None,
    name: Name = None,
    stop_below: StopBelow = None,
    stop_when_solved: StopWhenSolved = False,
    sampler_seed: SamplerSeed = None,
    as_json: Json = False,
) -> None:
    """Train a sweep here and print its results: the embedded mode, no servers needed.

    Defaults reproduce the seed's three scripts (all three variants, seed 777, lr 1). With
    XORJOBS_API_URL set, the sweep goes to that API and this command waits for it.
    """
    from xorjobs.cli.run_command import run_sweep

    spec = spec_from_command_line(ctx)  # the sweep flags above, read from ctx as `run`/`submit` share them
    results = run_sweep(spec, get_settings())
    if as_json:
        render.print_json({"sweep_id": results["sweep_id"], "jobs": results["jobs"]})
    else:
        _print_results(results)
    _exit_for(results)


def _print_results(results: dict[str, Any]) -> None:
    title = f"sweep {results['sweep_id']}" + shown_of(len(results["jobs"]), results["counts"])
    render.stdout.print(render.jobs_table(results["jobs"], title, with_results=True))
    render.stdout.print(render.counts_line(results["counts"]))


@app.command()
def sweeps(
    as_json: Json = False,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000, help="At most this many")] = 50,
    name: NamePart = None,
    state: SweepStates = None,
) -> None:
    """List the sweeps, newest first, with name, size and state counts.

    --name keeps the sweeps whose name contains the text (any case); --state those with at least one job
    in one of the states (--state running: the sweeps still running).
    """
    result = _backend().sweeps(limit, sweep_filter(name, state))
    if as_json:
        render.print_json(result)
        return
    render.stdout.print(render.sweeps_table(result["sweeps"]))


@app.command()
def status(
    sweep_id: SweepArg = None,
    as_json: Json = False,
    watch: Annotated[
        bool, typer.Option("--watch", "-w", help="Refresh in place until every job finished (on a terminal)")
    ] = False,
    state: States = None,
    variant: FilterVariants = None,
    lr: FilterLrs = None,
    seed: FilterSeeds = None,
    sort: Sort = None,
    desc: Descending = False,
    limit: Limit = None,
) -> None:
    """A sweep's state counts (of all its jobs) and one row per job (those the filters keep)."""
    filters, order = job_filter(state, variant, lr, seed), job_order(sort, desc, limit)
    backend = _backend()
    result = backend.status(sweep_id, filters, order)
    title = f"sweep {result['sweep_id']}" + (f" ({result['name']})" if result.get("name") else "")
    title += shown_of(len(result["jobs"]), result["counts"])
    if watch and not as_json and render.stdout.is_terminal:
        from xorjobs.cli.watch import watch_status

        watch_status(
            lambda: backend.status(result["sweep_id"], filters, order),
            render.stdout,
            lambda current: render.jobs_table(current["jobs"], title, with_results=False),
        )
        return
    if as_json:
        render.print_json(
            {"sweep_id": result["sweep_id"], "counts": result["counts"], "jobs": result["jobs"]}
        )
        return
    render.stdout.print(render.jobs_table(result["jobs"], title, with_results=False))
    render.stdout.print(render.counts_line(result["counts"]))


@app.command()
def results(
    sweep_id: SweepArg = None,
    as_json: Json = False,
    as_csv: Csv = False,
    by: Annotated[
        str | None,
        typer.Option(
            "--by",
            help="Aggregate per group of these fields (comma list of variant, lr, seed, device): solve rate "
            "with a 95% Wilson interval, final cost, steps to converge, diverged jobs",
        ),
    ] = None,
    threshold: Annotated[
        str | None,
        typer.Option("--threshold", help="With --by: converged means cost below this \\[default: 0.05]"),
    ] = None,
    state: States = None,
    variant: FilterVariants = None,
    lr: FilterLrs = None,
    seed: FilterSeeds = None,
    sort: Sort = None,
    desc: Descending = False,
    limit: Limit = None,
) -> None:
    """Per job: variant, seed, lr, device, state, final cost, accuracy; with --by, per group of jobs.

    --json adds each job's costs. With --by: jobs, succeeded/failed, solve rate (accuracy 1.0) with a
    95% Wilson interval, final cost mean ± std and median, median steps to converge, diverged jobs.
    The final cost is the trained model's (BCE of the final hypothesis); --json also has last_logged_cost.
    --state, --variant, --lr and --seed keep the matching jobs (with --by too); --sort final_cost --limit 10
    lists the ten best.
    """
    filters, order = job_filter(state, variant, lr, seed), job_order(sort, desc, limit)
    if by is not None or threshold is not None:
        from xorjobs import analysis
        from xorjobs.cli.grouped_tables import print_summary
        from xorjobs.cli.options import parse_threshold
        from xorjobs.errors import InvalidSpec

        if by is None:
            raise InvalidSpec("--threshold", "applies to --by (the per-group summary) only")
        if not order.is_default:
            raise InvalidSpec("--sort" if sort else "--limit", "applies to the per-job results, not to --by")
        fields = analysis.parse_by(by, "--by")
        summary = _backend().summary(sweep_id, fields, parse_threshold(threshold), filters)
        print_summary(summary, as_json, as_csv)
        return
    result = _backend().results(sweep_id, filters, order)
    if as_json:
        render.print_json({"sweep_id": result["sweep_id"], "jobs": result["jobs"]})
    elif as_csv:
        render.write_csv(result["jobs"], render.RESULT_CSV_COLUMNS)
    else:
        _print_results(result)


@app.command()
def show(job_id: Annotated[str, typer.Argument(help="Job id")], as_json: Json = False) -> None:
    """One job's record, error text included."""
    job = _backend().job(job_id)
    if as_json:
        render.print_json(job)
        return
    for key, value in job.items():
        shown = render.number(value) if key in ("final_cost", "last_logged_cost", "accuracy", "lr") else value
        if key in ("hypothesis", "predicted") and value is not None:
            shown = "[" + ", ".join(render.number(item) for item in value) + "]"
        shown = "-" if shown is None else render.safe(shown, multiline=key == "error")
        render.stdout.print(f"[bold]{key:>16}[/] {shown}")


@app.command()
def costs(job_id: Annotated[str, typer.Argument(help="Job id")], as_json: Json = False) -> None:
    """One job's logged costs (step, cost)."""
    result = _backend().costs(job_id)
    if as_json:
        render.print_json(result)
        return
    for step, cost in result["costs"]:
        render.stdout.print(f"{step:>8} {render.number(cost, 10)}")


@app.command()
def cancel(identifier: Annotated[str, typer.Argument(metavar="SWEEP_ID|JOB_ID")]) -> None:
    """Cancel queued and running jobs: queued ones never start, running ones stop soon."""
    result = _backend().cancel(identifier)
    render.stdout.print(f"cancelled {len(result['cancelled'])} job(s)")


@app.command()
def retry(
    sweep_id: Annotated[str, typer.Argument(help="Sweep id")],
    failed: Annotated[bool, typer.Option("--failed", help="Only failed jobs (not cancelled ones)")] = False,
) -> None:
    """Re-queue the jobs of a sweep that did not succeed.

    In the embedded mode (no XORJOBS_API_URL, no XORJOBS_BROKER_URL) it then trains them here, as `run`
    does, and prints the results (exit 1 if some fail again).
    """
    if not sweep_id.startswith(SWEEP_ID_PREFIX):
        # Like every other command given the wrong kind of id: unknown (exit 3), not "re-queued 0".
        raise NotFound(f"no sweep {sweep_id} (retry takes a sweep id, which starts with {SWEEP_ID_PREFIX})")
    settings = get_settings()
    if settings.trains_in_process:
        from xorjobs.cli.run_command import retry_in_process

        retried, results = retry_in_process(sweep_id, failed, settings)
        render.stdout.print(f"re-queued {len(retried)} job(s)")
        _print_results(results)
        if any(job["state"] != "succeeded" for job in results["jobs"] if job["id"] in retried):
            raise typer.Exit(1)  # a re-queued job failed again (or was cancelled meanwhile)
        return
    result = backend_for(settings).retry(sweep_id, failed)
    render.stdout.print(f"re-queued {len(result['retried'])} job(s)")


from xorjobs.cli import (  # noqa: E402  (each module registers its commands)
    compare_command,
    export_command,
    housekeeping_commands,
    plot_command,
    services,
    spec_command,
    verify_command,
    workers_command,
)

services.register(app)
compare_command.register(app)
export_command.register(app)
plot_command.register(app)
spec_command.register(app)
housekeeping_commands.register(app)  # delete, prune
workers_command.register(app)
verify_command.register(app)


def _settings_error(error: ValidationError) -> str:
    """One line naming the variable; the value itself is not repeated (it may be a secret)."""
    first = error.errors()[0]
    variable = "XORJOBS_" + "_".join(str(part) for part in first["loc"]).upper()
    return f"{variable}: {first['msg'].removeprefix('Value error, ')}"


def main() -> None:
    """Entry point: one line on stderr and a meaningful exit code for anything a user can cause."""
    try:
        # standalone_mode=False: click's usage errors come back here and are printed as every other error
        # is (one "error:" line), not in typer's boxed panel.
        code = app(standalone_mode=False, prog_name="xorjobs")
        sys.exit(code if isinstance(code, int) else 0)
    except NoArgsIsHelpError as error:
        error.show()  # the help text, as before
        sys.exit(error.exit_code)
    except UsageError as error:
        render.stderr.print(f"[red]error:[/] {escape(usage_error_line(error))}", soft_wrap=True)
        sys.exit(error.exit_code)
    except typer.Abort:  # "n" at a confirmation
        render.stderr.print("aborted")
        sys.exit(1)
    except typer.Exit as error:
        sys.exit(error.exit_code)
    except ClickException as error:
        render.stderr.print(f"[red]error:[/] {escape(error.format_message())}", soft_wrap=True)
        sys.exit(error.exit_code)
    except XorjobsError as error:
        render.stderr.print(f"[red]error:[/] {escape(str(error))}", soft_wrap=True)
        sys.exit(error.exit_code)
    except ValidationError as error:  # a bad XORJOBS_* value, found when the settings are read
        render.stderr.print(f"[red]error:[/] {escape(_settings_error(error))}", soft_wrap=True)
        sys.exit(2)
    except ModuleNotFoundError as error:
        message = missing_extra_message(error)
        if message is None:
            raise
        render.stderr.print(f"[red]error:[/] {escape(message)}", soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        render.stderr.print("interrupted")
        sys.exit(130)
    except Exception as error:  # the store failing under an in-process command: exit 4, one line
        unavailable = _store_unavailable(error)
        if unavailable is None:
            raise
        render.stderr.print(f"[red]error:[/] {escape(str(unavailable))}", soft_wrap=True)
        sys.exit(unavailable.exit_code)


def _store_unavailable(error: Exception) -> XorjobsError | None:
    """What to say when ``error`` is the store failing (disk full, locked past the busy timeout,
    Postgres gone), else None. The base install, the HTTP client alone, has no store to fail."""
    try:
        from xorjobs.store.unavailable import store_unavailable
    except ModuleNotFoundError:
        return None
    return store_unavailable(error)
