"""Who holds a job, and is that holder dead? Only answerable for processes in our own PID namespace.

A job's ``worker`` column names its holder as ``node@host/pid;scope=<id>``. The scope says where the pid
means something: one boot of one kernel (``boot_id``) and one PID namespace (the inode of
``/proc/self/ns/pid``). Two processes with the same hostname are not enough to compare pids: a worker
under ``unshare --pid``, or in a container sharing the host's name, sees none of the host's pids and
took over healthy jobs of the host's worker (issue 14 §7: 2/40, 1/400, 2/500). So a holder is presumed
dead here only when its scope equals ours and its pid is gone (or a zombie); any other holder, and one
recorded in the old format without a scope, is left to its lease, which the database's clock judges.

The pid plus the scope also identify one process start uniquely: a restarted worker gets a new pid
(or, after a reboot, a new ``boot_id``); a pid reused by another process looks alive, the safe error.
"""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path

_SCOPE_MARK = ";scope="


@functools.cache
def liveness_scope() -> str | None:
    """This process's boot and PID namespace, as a short id; None where the system does not say."""
    try:
        boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        namespace = os.stat("/proc/self/ns/pid")
    except OSError:
        return None
    return hashlib.sha256(f"{boot_id}:{namespace.st_dev}:{namespace.st_ino}".encode()).hexdigest()[:16]


def holder_name(node: str, pid: int | None = None) -> str:
    """The ``worker`` value a claim records for a training process of ``node`` (``name@host``)."""
    name = f"{node}/{os.getpid() if pid is None else pid}"
    scope = liveness_scope()
    return name if scope is None else f"{name}{_SCOPE_MARK}{scope}"


def holder_is_dead(worker: str) -> bool:
    """True when ``worker`` (as ``holder_name`` records it) lived where our pids mean the same, and is
    gone. A holder elsewhere, or whose name does not parse, is never presumed dead here: the lease
    decides for those."""
    name, mark, scope = worker.partition(_SCOPE_MARK)
    if not mark or scope != liveness_scope() or scope is None:
        return False
    pid_text = name.rpartition("/")[2]
    if not pid_text.isdigit() or int(pid_text) == os.getpid():
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
