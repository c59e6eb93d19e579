"""The logged costs of a pack: ``models.train``'s cost log for J jobs at once."""

from __future__ import annotations

import time

import torch

from xorjobs.models.engine import CostChunk, PackProgressCallback

Tensor = torch.Tensor


class PackedCostLog:
    """``models.train``'s ``_CostLog`` for J jobs: hands new costs to ``on_progress`` at logged steps at
    most every ``interval_s``, and once more at the end.

    Logged steps keep their (J,) tensors until a flush turns them into per-job lists in one go: a
    Python append per job and logged step cost a third of a 512-job ``nn`` pack's training time. A
    member that fails stays failed, so its alive steps are a prefix of the pending ones.

    A pack that drops finished members (early stopping) calls ``regroup`` with the jobs its rows hold
    from then on: what is pending is filed under the old rows first.
    """

    def __init__(self, jobs: int, on_progress: PackProgressCallback | None, interval_s: float) -> None:
        self.costs: list[CostChunk] = [[] for _ in range(jobs)]
        self._steps: list[int] = []
        self._values: list[Tensor] = []
        self._alive: list[Tensor] = []
        self._flushed = [0] * jobs
        self._on_progress = on_progress
        self._interval_s = interval_s
        self._last_flush = time.monotonic()
        self._members: list[int] | None = None  # row -> job; None: row i is job i

    def regroup(self, members: list[int]) -> None:
        """From now on row ``i`` of the logged tensors is job ``members[i]``."""
        self._collect()
        self._members = members

    def log(self, step: int, costs: Tensor, alive: Tensor) -> None:
        self._steps.append(step)
        self._values.append(costs)
        self._alive.append(alive)
        if self._on_progress is not None and time.monotonic() - self._last_flush >= self._interval_s:
            self.flush()

    def _collect(self) -> None:
        if not self._steps:
            return
        values = torch.stack(self._values).t().tolist()  # per job: its cost at every pending step
        alive_steps = torch.stack(self._alive).sum(0).tolist()
        steps = self._steps
        members = self._members if self._members is not None else range(len(values))
        for job, row, alive in zip(members, values, alive_steps, strict=True):
            self.costs[job].extend(zip(steps[:alive], row[:alive], strict=True))
        self._steps, self._values, self._alive = [], [], []

    def flush(self) -> None:
        self._collect()
        if self._on_progress is not None:
            self._on_progress([c[f:] for c, f in zip(self.costs, self._flushed, strict=True)])
            self._flushed = [len(c) for c in self.costs]
            self._last_flush = time.monotonic()
