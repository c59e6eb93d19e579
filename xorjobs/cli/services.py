"""``xorjobs worker``, ``xorjobs api`` and ``xorjobs db upgrade``: starting the services."""

from __future__ import annotations

import os
from enum import StrEnum
from typing import Annotated

import typer

from xorjobs.cli import render
from xorjobs.errors import InvalidSpec, NoCuda
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

    if settings.embedded_queue:
        from xorjobs.worker.embedded import resync_embedded_queue

        resync_embedded_queue(settings, celery_app)
        render.stderr.print(f"embedded queue in {settings.queue_folder} (set XORJOBS_BROKER_URL for Redis)")
    render.stderr.print(f"store: {describe(settings.resolved_database_url)}")
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


def api(
    host: Annotated[str, typer.Option("--host", help="Interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="Port to listen on")] = 8000,
) -> None:
    """Serve the HTTP API (OpenAPI at /openapi.json, docs at /docs)."""
    import uvicorn

    from xorjobs.api.main import create_app

    if not host:
        raise InvalidSpec("--host", "must not be empty")
    uvicorn.run(create_app(get_settings()), host=host, port=port, log_level="info", access_log=True)


def register(app: typer.Typer) -> None:
    app.command()(worker)
    app.command()(api)
    app.add_typer(db_app, name="db")
