"""The worker's Celery app (``celery -A worker.celery_app``) and its process signals."""

from __future__ import annotations

import logging
from typing import Any

from celery.signals import worker_process_init, worker_ready, worker_shutdown

from worker.recovery import RecoveryLoop
from xorjobs.queue import get_celery
from xorjobs.settings import get_settings

log = logging.getLogger(__name__)
app = get_celery()
_recovery: list[RecoveryLoop] = []


def limit_torch_threads() -> None:
    """One thread per training process: XOR ops are tiny, and 2 threads on 2 cores ran 3-12x slower
    (reliability notes §0.8). Results do not depend on it: the tensors are far too small to split."""
    import torch

    torch.set_num_threads(1)


@worker_process_init.connect
def _on_child_start(**_: Any) -> None:
    limit_torch_threads()


@worker_ready.connect
def _on_worker_ready(**_: Any) -> None:
    loop = RecoveryLoop(get_settings(), app)
    loop.start()
    _recovery.append(loop)


@worker_shutdown.connect
def _on_worker_shutdown(**_: Any) -> None:
    for loop in _recovery:
        loop.stop()


import worker.tasks  # noqa: E402,F401  (registers the task on the app)
