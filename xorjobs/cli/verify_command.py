"""``xorjobs verify JOB_ID``: re-run a stored job solo and say whether it is bit-identical (issue 12 §6).

In-process (no ``XORJOBS_API_URL``) the re-run happens in this process; with an API, a worker of the
fleet re-runs it (``POST /jobs/{id}/verify``). Exit 0 when identical, 1 when not.
"""

from __future__ import annotations

from typing import Annotated

import typer

from xorjobs.cli import render
from xorjobs.client import Client, VerifyReport
from xorjobs.defaults import MAX_VERIFY_WAIT_SECONDS, VERIFY_WAIT_SECONDS
from xorjobs.errors import InvalidSpec
from xorjobs.settings import get_settings


def verify(
    job_id: Annotated[str, typer.Argument(help="Job id")],
    device: Annotated[
        str | None,
        typer.Option("--device", help="Re-run on cpu or cuda \\[default: the job's own device]"),
    ] = None,
    timeout: Annotated[
        float | None,
        typer.Option(
            "--timeout",
            metavar="SECONDS",
            help=f"With XORJOBS_API_URL: how long the API waits for a worker's report "
            f"\\[default: {VERIFY_WAIT_SECONDS:g}]",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON")] = False,
) -> None:
    """Re-run a stored job solo here (with XORJOBS_API_URL: on a worker) and compare it bit for bit.

    Reports the largest absolute and relative cost difference over the logged steps, the first differing
    step, and whether accuracy and labels agree; says which CPU capability and torch version made the
    stored job when they differ from the re-run's. Exit 0 when identical, 1 when not.
    """
    if device is not None and device not in ("cpu", "cuda"):
        raise InvalidSpec("--device", f"{device!r} is not a device (choose from cpu, cuda)")
    if timeout is not None and not 0 < timeout <= MAX_VERIFY_WAIT_SECONDS:
        raise InvalidSpec(
            "--timeout",
            f"must be more than 0 and at most {MAX_VERIFY_WAIT_SECONDS:g} seconds (got {timeout:g})",
        )
    client = Client(settings=get_settings())
    try:
        report = client.verify(job_id, device, timeout)
    except InvalidSpec as error:
        if error.field != "job_id":  # the API's name for it (path.job_id); this command's is JOB_ID
            raise
        raise InvalidSpec("JOB_ID", error.message) from None
    if as_json:
        render.print_json({**report.extra, **_as_dict(report)})
    else:
        print_report(report)
    if not report.identical:
        raise typer.Exit(1)


def _as_dict(report: VerifyReport) -> dict[str, object]:
    return {name: getattr(report, name) for name in report.__dataclass_fields__ if name != "extra"}


def print_report(report: VerifyReport) -> None:
    out = render.stdout
    verdict = "[green]bit-identical[/]" if report.identical else "[red]NOT identical[/]"
    out.print(f"job {render.safe(report.job_id)}: {verdict} (re-run solo on {render.safe(report.device)})")
    out.print(
        f"  costs: {report.steps_compared} logged step(s) compared; max abs diff "
        f"{render.number(report.max_abs_cost_diff, 6)}, "
        f"max rel diff {render.number(report.max_rel_cost_diff, 6)}"
    )
    if report.first_differing_step is not None:
        out.print(f"  first differing step: {report.first_differing_step}")
    agree = {True: "agrees", False: "differs"}
    out.print(
        f"  accuracy {agree[report.accuracy_agrees]} (stored {render.number(report.stored_accuracy)}, "
        f"re-run {render.number(report.rerun_accuracy)}); "
        f"labels {'agree' if report.labels_agree else 'differ'}; "
        f"hypothesis {'identical' if report.hypothesis_identical else 'differs'}"
    )
    stored = report.stored
    out.print(
        f"  stored job made by: {render.safe(stored.get('device_name') or stored.get('device'))}, CPU "
        f"capability {render.safe(stored.get('cpu_capability') or '-')}, torch "
        f"{render.safe(stored.get('torch_version') or '-')}, "
        f"engine {render.safe(stored.get('engine') or '-')}"
    )
    here = report.here
    out.print(
        f"  re-run here: {render.safe(here.get('device_name') or here.get('device'))}, CPU capability "
        f"{render.safe(here.get('cpu_capability') or '-')}, "
        f"torch {render.safe(here.get('torch_version') or '-')}"
    )
    if report.note:
        out.print(f"  [yellow]note:[/] {render.safe(report.note)}")


def register(app: typer.Typer) -> None:
    app.command()(verify)
