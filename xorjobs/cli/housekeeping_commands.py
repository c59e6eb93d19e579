"""``xorjobs delete`` and ``xorjobs prune``: removing sweeps with their jobs and logged costs."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from xorjobs.cli import render
from xorjobs.cli.options import Json, Yes
from xorjobs.client import backend_for
from xorjobs.errors import SweepActive
from xorjobs.settings import get_settings


def delete(
    sweep_id: Annotated[str, typer.Argument(help="Sweep id")],
    yes: Yes = False,
    cancel: Annotated[
        bool, typer.Option("--cancel", help="Cancel its queued and running jobs first instead of refusing")
    ] = False,
    as_json: Json = False,
) -> None:
    """Delete a sweep with its jobs and their logged costs (asks first unless --yes)."""
    backend = backend_for(get_settings())
    status = backend.status(sweep_id)
    active = status["counts"].get("queued", 0) + status["counts"].get("running", 0)
    if active and not cancel:
        # Refused before asking: a "y" would not make the delete happen.
        raise SweepActive(_active_message(sweep_id, active))
    if not yes:
        note = f", cancelling its {active} queued or running job(s)" if active and cancel else ""
        typer.confirm(
            f"delete sweep {sweep_id} and its {len(status['jobs'])} job(s) with their costs{note}?",
            abort=True,
        )
    try:
        result = backend.delete_sweep(sweep_id, cancel)
    except SweepActive:
        # A job was queued between the check and the delete: say it in flags, not in the API's terms.
        latest = backend.status(sweep_id)["counts"]
        raise SweepActive(
            _active_message(sweep_id, latest.get("queued", 0) + latest.get("running", 0))
        ) from None
    if as_json:
        render.print_json(result)
        return
    for sweep in result["deleted"]:
        render.stdout.print(_deleted_line(sweep, "deleted"))


def _active_message(sweep_id: str, active: int) -> str:
    return (
        f"sweep {sweep_id} has {active} queued or running job(s); cancel them first "
        f"(`xorjobs cancel {sweep_id}`) or delete with --cancel"
    )


def _deleted_line(sweep: dict[str, Any], verb: str) -> str:
    cancelled = f" (cancelled {sweep['cancelled']} first)" if sweep.get("cancelled") else ""
    name = f" ({render.safe(sweep['name'])})" if sweep.get("name") else ""
    counted = f"{sweep['jobs']} job(s), {sweep['costs']} logged cost(s)"
    return f"{verb} sweep {render.safe(sweep['sweep_id'])}{name}: {counted}{cancelled}"


def prune(
    older_than: Annotated[
        str, typer.Option("--older-than", help="Age past the sweep's end: 30d, 12h, 90m, 45s or 2w")
    ],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only list what would be deleted")] = False,
    yes: Yes = False,
    as_json: Json = False,
) -> None:
    """Delete the finished sweeps (no job queued or running) that ended longer ago than --older-than."""
    from xorjobs.store.housekeeping import parse_age  # the store: not loaded by the HTTP-only client

    seconds = parse_age(older_than, "--older-than").total_seconds()
    backend = backend_for(get_settings())
    planned = backend.prune(seconds, dry_run=True)
    if not dry_run and planned["deleted"] and not yes:
        for sweep in planned["deleted"]:
            render.stderr.print(_deleted_line(sweep, "will delete"))
        typer.confirm(f"delete these {len(planned['deleted'])} sweep(s)?", abort=True)
    result = planned if dry_run or not planned["deleted"] else backend.prune(seconds, dry_run=False)
    if as_json:
        render.print_json(result)
        return
    for sweep in result["deleted"]:
        render.stdout.print(_deleted_line(sweep, "would delete" if dry_run else "deleted"))
    if not result["deleted"]:
        render.stdout.print(f"no finished sweep ended more than {render.safe(older_than)} ago")


def register(app: typer.Typer) -> None:
    for command in (delete, prune):
        app.command()(command)
