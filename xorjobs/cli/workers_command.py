"""``xorjobs workers``: the fleet as the workers registered themselves (``GET /workers`` over HTTP)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from xorjobs.cli import render
from xorjobs.cli.options import Json
from xorjobs.settings import Settings, get_settings

WORKER_STATE_STYLES = {"live": "green", "lost": "red", "stopped": "magenta"}


def fetch_workers(settings: Settings, include_stopped: bool) -> dict[str, Any]:
    """``GET /workers`` when XORJOBS_API_URL is set; the store itself otherwise (checked, never created)."""
    if settings.api_url:
        from xorjobs.client.http import HttpBackend

        backend = HttpBackend(settings.api_url, settings.api_token)
        return backend._call("GET", "/workers", params={"all": include_stopped})
    from xorjobs.service import Service
    from xorjobs.store.workers import list_workers

    url = Service(settings).ready().url
    return {"workers": list_workers(url, include_stopped)}


def workers(
    as_json: Json = False,
    include_stopped: Annotated[
        bool, typer.Option("--all", help="Also the workers that shut down cleanly")
    ] = False,
) -> None:
    """List the workers: state (live, lost: no heartbeat lately, stopped), queues, engines, current work."""
    result = fetch_workers(get_settings(), include_stopped)
    if as_json:
        render.print_json(result)
        return
    if not result["workers"]:
        render.stdout.print(
            "no workers registered" + ("" if include_stopped else " (live or lost; --all for all)")
        )
        return
    table = render.Table(title="workers", title_justify="left")
    for column in ("worker", "host", "pid", "state", "queues", "engines", "started", "heartbeat", "now"):
        table.add_column(column, justify="right" if column == "pid" else "left")
    for worker in result["workers"]:
        state = str(worker["state"])
        table.add_row(
            render.safe(worker["node"]),
            render.safe(worker["host"]),
            str(worker["pid"]),
            f"[{WORKER_STATE_STYLES.get(state, '')}]{render.safe(state)}[/]",
            render.safe(",".join(worker["queues"])),
            render.safe(_engines(worker["engines"])),
            str(worker["started_at"])[:19].replace("T", " "),
            f"{float(worker['seconds_since_heartbeat']):.0f} s ago",
            render.safe(_current(worker["current"])),
        )
    render.stdout.print(table)


def _engines(engines: dict[str, str]) -> str:
    """``nn exact, wide_deep exact, backprop solo``; one word when every variant has the same engine."""
    names = set(engines.values())
    if len(names) == 1:
        return names.pop()
    return ", ".join(f"{variant} {engine}" for variant, engine in engines.items())


def _current(current: list[dict[str, Any]]) -> str:
    if not current:
        return "idle"
    return ", ".join(
        str(pack["leader"]) if pack["size"] == 1 else f"{pack['leader']} (+{pack['size'] - 1})"
        for pack in current
    )


def register(app: typer.Typer) -> None:
    app.command()(workers)
