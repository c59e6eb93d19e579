"""``xorjobs worker``, ``xorjobs api`` and ``xorjobs db upgrade``: starting the services."""

from __future__ import annotations

import errno
import os
import socket
from enum import StrEnum
from typing import Annotated

import click
import typer

from xorjobs.cli import render
from xorjobs.errors import CannotServe, InvalidSpec, NoCuda
from xorjobs.settings import get_settings


class Queue(StrEnum):
    CPU = "cpu"
    GPU = "gpu"


class Pool(StrEnum):
    PREFORK = "prefork"
    SOLO = "solo"


db_app = typer.Typer(help="The store's schema (Alembic migrations).", no_args_is_help=True)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or upgrade the store's schema to the newest revision (the one command that migrates a
    server store; the API and the workers refuse to start until it has run)."""
    from xorjobs.store.engine import describe
    from xorjobs.store.schema import current_revision, upgrade

    url = get_settings().resolved_database_url
    upgrade(url)
    render.stdout.print(f"store {describe(url)} at revision {current_revision(url)}")


def worker(
    queue: Annotated[
        Queue, typer.Option("--queue", "-Q", help="The queue to consume: cpu or gpu")
    ] = Queue.CPU,
    concurrency: Annotated[
        int | None,
        typer.Option(
            "--concurrency", "-c", min=1, help="Training processes [default: cores for cpu, 1 for gpu]"
        ),
    ] = None,
    pool: Annotated[
        Pool, typer.Option("--pool", help="prefork enforces time limits; solo never forks")
    ] = Pool.PREFORK,
    loglevel: Annotated[str, typer.Option("--loglevel", "-l", help="Log level")] = "INFO",
) -> None:
    """Start a worker that trains the jobs of one queue (Ctrl-C stops it after the running jobs)."""
    settings = get_settings()
    if queue is Queue.GPU:
        from xorjobs.worker.devices import cuda_device_count

        if cuda_device_count() == 0:
            raise NoCuda(
                "a gpu worker needs CUDA, and this machine has no usable CUDA device (torch sees none)"
            )
    if concurrency is None:
        concurrency = 1 if queue is Queue.GPU else (os.cpu_count() or 1)
    from xorjobs.store.engine import describe
    from xorjobs.store.schema import check_servable

    # Workers never migrate (several start at once, on many machines): `xorjobs db upgrade` does, first.
    check_servable(settings.resolved_database_url)
    from xorjobs.worker.celery_app import app as celery_app
    from xorjobs.worker.celery_app import preload_torch_deferring_ctrl_c

    if settings.embedded_queue:
        from xorjobs.worker.embedded import resync_embedded_queue

        resync_embedded_queue(settings, celery_app)
        render.stderr.print(f"embedded queue in {settings.queue_folder} (set XORJOBS_BROKER_URL for Redis)")
    render.stderr.print(f"store: {describe(settings.resolved_database_url)}")
    try:
        preload_torch_deferring_ctrl_c()  # the longest part of the start, so Ctrl-C there is not lost
        celery_app.worker_main(
            [
                "worker",
                f"--queues={queue.value}",
                f"--hostname={queue.value}-{os.getpid()}@%h",
                f"--concurrency={concurrency}",
                f"--pool={pool.value}",
                f"--loglevel={loglevel}",
                "--without-mingle",
            ]
        )
    except (KeyboardInterrupt, click.exceptions.Abort):
        # Ctrl-C before Celery's own handlers are in (worker_init imports torch for seconds): celery's
        # click turns it into Abort, which was a 60-line traceback and exit 1. Celery sends no
        # worker_shutdown from there, so stop the recovery process and mark the registry row stopped here.
        from xorjobs.worker.celery_app import stop_recovery

        stop_recovery()
        render.stderr.print("interrupted: the worker stopped before it was ready")
        raise typer.Exit(130) from None


def api(
    host: Annotated[str, typer.Option("--host", help="Interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="Port to listen on")] = 8000,
) -> None:
    """Serve the HTTP API (OpenAPI at /openapi.json, docs at /docs)."""
    import uvicorn

    from xorjobs.api.main import create_app

    if not host:
        raise InvalidSpec("--host", "must not be empty")
    check_can_listen(host, port)  # before the app starts: uvicorn would start it, log the error, exit 3
    uvicorn.run(create_app(get_settings()), host=host, port=port, log_level="info", access_log=True)


def check_can_listen(host: str, port: int) -> None:
    """Bind every address uvicorn will bind (``getaddrinfo``, as asyncio's ``create_server`` does) and let
    go at once: a port another process holds is exit 4 (a service that cannot start) with one line naming
    ``--port``; a host that is no address of this machine is bad input, exit 2 naming ``--host``."""
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as error:
        reason = f"{host!r} is not a name or address of this machine ({error.strerror})"
        raise InvalidSpec("--host", reason) from None
    for family, kind, protocol, _, address in addresses:
        with socket.socket(family, kind, protocol) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
            try:
                probe.bind(address)
            except OSError as error:
                raise _cannot_listen(host, port, error) from None


def _cannot_listen(host: str, port: int, error: OSError) -> InvalidSpec | CannotServe:
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if error.errno == errno.EADDRINUSE:
        return CannotServe(f"--port: {where} is in use by another process; choose another port with --port")
    if error.errno == errno.EADDRNOTAVAIL:
        return InvalidSpec("--host", f"{host!r} is not an address of this machine")
    if error.errno == errno.EACCES:
        return CannotServe(
            f"--port: cannot listen on {where}: permission denied (ports below 1024 need privileges); "
            "choose another port with --port"
        )
    return CannotServe(f"--port: cannot listen on {where}: {error.strerror or error}")


def register(app: typer.Typer) -> None:
    app.command()(worker)
    app.command()(api)
    app.add_typer(db_app, name="db")
