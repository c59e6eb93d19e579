"""Is the process that holds a job dead? Only answerable for processes on this machine."""

from __future__ import annotations

import os
import socket


def holder_is_dead(worker: str) -> bool:
    """True when ``worker`` (``node@host/pid``, as the task records it) ran on this host and is gone.

    A holder on another host, or one whose name does not parse, is never presumed dead here: the lease
    decides for those.
    """
    node, _, pid_text = worker.rpartition("/")
    host = node.rpartition("@")[2]
    if not pid_text.isdigit() or host != socket.gethostname() or int(pid_text) == os.getpid():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return _is_zombie(int(pid_text))


def _is_zombie(pid: int) -> bool:
    """A killed child not yet reaped by its parent still answers kill(0); its state says it is dead."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] == "Z"
    except OSError:
        return False
