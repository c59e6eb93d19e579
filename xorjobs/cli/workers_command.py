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
    render.stdout.print(workers_table(result["workers"]))


def workers_table(rows: list[dict[str, Any]]) -> render.Table:
    """The fleet, to fit 80 columns where it can: host and pid are left out when every worker's name
    already says them (``cpu-PID@HOST``, as ``xorjobs worker`` names itself; ``--json`` has them), and
    only the lists (engines, the work held now) wrap."""
    named = all(str(row["node"]).endswith(f"-{row['pid']}@{row['host']}") for row in rows)
    columns = ["worker", "state", "queues", "engines", "started", "heartbeat", "now"]
    if not named:
        columns[1:1] = ["host", "pid"]
    table = render.new_table("workers")
    for column in columns:
        render.add_column(table, column, right=column == "pid", wraps=column in ("engines", "now"))
    for worker in rows:
        state = str(worker["state"])
        cells = {
            "worker": render.safe(worker["node"]),
            "host": render.safe(worker["host"]),
            "pid": str(worker["pid"]),
            "state": f"[{WORKER_STATE_STYLES.get(state, '')}]{render.safe(state)}[/]",
            "queues": render.safe(",".join(worker["queues"])),
            "engines": render.safe(_engines(worker["engines"])),
            "started": str(worker["started_at"])[:16].replace("T", " "),
            "heartbeat": f"{float(worker['seconds_since_heartbeat']):.0f} s ago",
            "now": render.safe(_current(worker["current"])),
        }
        table.add_row(*(cells[column] for column in columns))
    return render.fit(table)


def _engines(engines: dict[str, str]) -> str:
    """``native, backprop exact``: the engine most variants train on, then the others by name; one word
    when every variant has the same engine."""
    if not engines:
        return "-"
    names = list(engines.values())
    common = max(dict.fromkeys(names), key=names.count)  # the first of the most frequent
    others = [f"{variant} {engine}" for variant, engine in engines.items() if engine != common]
    return ", ".join([common, *others])


def _current(current: list[dict[str, Any]]) -> str:
    if not current:
        return "idle"
    return ", ".join(
        str(pack["leader"]) if pack["size"] == 1 else f"{pack['leader']} (+{pack['size'] - 1})"
        for pack in current
    )


def register(app: typer.Typer) -> None:
    app.command()(workers)
