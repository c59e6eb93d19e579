"""The ``xorjobs`` command line: submit sweeps, watch them, read results, and start the services."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer
from rich.markup import escape

import xorjobs
from xorjobs.cli import render
from xorjobs.cli.backends import Backend, backend_for
from xorjobs.cli.extras import missing_extra_message
from xorjobs.cli.sweep_options import Device, LogEvery, Lrs, Name, Seeds, Steps, Variants, build_spec
from xorjobs.cli.waiting import wait_for_sweep
from xorjobs.defaults import DEFAULT_STEPS
from xorjobs.errors import XorjobsError
from xorjobs.settings import get_settings

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
    variant: Variants = None,
    seed: Seeds = None,
    lr: Lrs = None,
    device: Device = "cpu",
    steps: Steps = str(DEFAULT_STEPS),
    log_every: LogEvery = None,
    name: Name = None,
    key: Annotated[
        str | None,
        typer.Option("--key", help="Idempotency key: submitting again with it returns the same sweep"),
    ] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Show progress until the sweep finishes")] = False,
    as_json: Json = False,
) -> None:
    """Submit a sweep (variant × seed × lr) to the queue; one job per combination."""
    spec = build_spec(variant, seed, lr, steps, log_every, device, name)
    backend = _backend()
    result = backend.submit(spec, key)
    _print_warnings(result)
    payload = {"sweep_id": result["sweep_id"], "jobs": result["jobs"]}
    if wait:
        status = wait_for_sweep(lambda: backend.status(result["sweep_id"]))
        payload = {"sweep_id": status["sweep_id"], "jobs": status["jobs"]}
    if as_json:
        render.print_json(payload)
    else:
        verb = "submitted" if result.get("created", True) else "already submitted with this key:"
        render.stdout.print(f"{verb} sweep [bold]{result['sweep_id']}[/] with {len(result['jobs'])} job(s)")
        render.stdout.print(render.jobs_table(payload["jobs"], "", with_results=False))
    if wait:
        _exit_for(backend.status(result["sweep_id"]))


@app.command()
def run(
    variant: Variants = None,
    seed: Seeds = None,
    lr: Lrs = None,
    device: Device = "cpu",
    steps: Steps = str(DEFAULT_STEPS),
    log_every: LogEvery = None,
    name: Name = None,
    as_json: Json = False,
) -> None:
    """Train a sweep here and print its results: the embedded mode, no servers needed.

    Defaults reproduce the seed's three scripts (all three variants, seed 777, lr 1). With
    XORJOBS_API_URL set, the sweep goes to that API and this command waits for it.
    """
    from xorjobs.cli.run_command import run_sweep

    spec = build_spec(variant, seed, lr, steps, log_every, device, name)
    results = run_sweep(spec, get_settings())
    if as_json:
        render.print_json({"sweep_id": results["sweep_id"], "jobs": results["jobs"]})
    else:
        _print_results(results)
    _exit_for(results)


def _print_results(results: dict[str, Any]) -> None:
    render.stdout.print(render.jobs_table(results["jobs"], f"sweep {results['sweep_id']}", with_results=True))
    render.stdout.print(render.counts_line(results["counts"]))


@app.command()
def sweeps(
    as_json: Json = False,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000, help="At most this many")] = 50,
) -> None:
    """List the sweeps, newest first, with name, size and state counts."""
    result = _backend().sweeps(limit)
    if as_json:
        render.print_json(result)
        return
    table = render.Table(title="sweeps", title_justify="left")
    for column in ("sweep", "name", "created", "jobs", "states"):
        table.add_column(column)
    for sweep in result["sweeps"]:
        table.add_row(
            sweep["sweep_id"],
            sweep["name"] or "-",
            sweep["created_at"][:19],
            str(sweep["size"]),
            render.counts_line(sweep["counts"]),
        )
    render.stdout.print(table)


@app.command()
def status(
    sweep_id: SweepArg = None,
    as_json: Json = False,
    watch: Annotated[
        bool, typer.Option("--watch", "-w", help="Refresh in place until every job finished (on a terminal)")
    ] = False,
) -> None:
    """A sweep's state counts and one row per job."""
    backend = _backend()
    result = backend.status(sweep_id)
    title = f"sweep {result['sweep_id']}" + (f" ({result['name']})" if result.get("name") else "")
    if watch and not as_json and render.stdout.is_terminal:
        from xorjobs.cli.watch import watch_status

        watch_status(
            lambda: backend.status(result["sweep_id"]),
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
) -> None:
    """Per job: variant, seed, lr, device, state, final cost, accuracy; with --by, per group of jobs.

    --json adds each job's costs. With --by: jobs, succeeded/failed, solve rate (accuracy 1.0) with a
    95% Wilson interval, final cost mean ± std and median, median steps to converge, diverged jobs.
    """
    if by is not None or threshold is not None:
        from xorjobs import analysis
        from xorjobs.cli.grouped_tables import print_summary
        from xorjobs.cli.options import parse_threshold
        from xorjobs.errors import InvalidSpec

        if by is None:
            raise InvalidSpec("--threshold", "applies to --by (the per-group summary) only")
        fields = analysis.parse_by(by, "--by")
        summary = _backend().summary(sweep_id, fields, parse_threshold(threshold))
        print_summary(summary, as_json, as_csv)
        return
    result = _backend().results(sweep_id)
    if as_json:
        render.print_json({"sweep_id": result["sweep_id"], "jobs": result["jobs"]})
    elif as_csv:
        render.write_csv(result["jobs"], render.RESULT_COLUMNS)
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
        shown = render.number(value) if key in ("final_cost", "accuracy", "lr") else value
        if key in ("hypothesis", "predicted") and value is not None:
            shown = "[" + ", ".join(render.number(item) for item in value) + "]"
        render.stdout.print(f"[bold]{key:>16}[/] {'-' if shown is None else shown}")


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
    """Re-queue the jobs of a sweep that did not succeed."""
    result = _backend().retry(sweep_id, failed)
    render.stdout.print(f"re-queued {len(result['retried'])} job(s)")


from xorjobs.cli import (  # noqa: E402  (each module registers its commands)
    compare_command,
    export_command,
    housekeeping_commands,
    plot_command,
    services,
)

services.register(app)
compare_command.register(app)
export_command.register(app)
plot_command.register(app)
housekeeping_commands.register(app)  # delete, prune


def main() -> None:
    """Entry point: one line on stderr and a meaningful exit code for anything a user can cause."""
    try:
        app()
    except XorjobsError as error:
        render.stderr.print(f"[red]error:[/] {escape(str(error))}", soft_wrap=True)
        sys.exit(error.exit_code)
    except ModuleNotFoundError as error:
        message = missing_extra_message(error)
        if message is None:
            raise
        render.stderr.print(f"[red]error:[/] {escape(message)}", soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        render.stderr.print("interrupted")
        sys.exit(130)
