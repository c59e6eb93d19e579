"""Which devices this machine can train on, checked without initialising CUDA in this process.

CUDA must not be initialised in a process that later forks (pytorch#40403, celery#6036): the check runs
in a short-lived subprocess, and CUDA is touched only inside the process that trains.
"""

from __future__ import annotations

import subprocess
import sys

_PROBE = (
    "import torch, sys; "
    "sys.stdout.write(str(torch.cuda.device_count()) if torch.cuda.is_available() else '0')"
)


def cuda_device_count() -> int:
    """How many CUDA devices a fresh process sees (0 when torch has no CUDA or there is no GPU)."""
    try:
        probe = subprocess.run(
            [sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=120, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return 0
    return int(probe.stdout) if probe.returncode == 0 and probe.stdout.isdigit() else 0
