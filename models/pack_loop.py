"""The training loop every pack engine shares: steps, NaN checks, cost logging and the results.

A pack engine supplies a ``StepPack`` (J jobs' parameters and one training step for all of them);
``run_pack`` drives it exactly as ``models.train`` drives one model: a forward pass, the cost at logged
steps, the update, and a last forward pass under ``no_grad`` for the final hypothesis.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Protocol

import torch
import torch.nn.functional as F

from xorjobs.defaults import VARIANTS
from xorjobs.models.cost_log import PackedCostLog
from xorjobs.models.data import xor_data
from xorjobs.models.engine import PackedMemberError, PackProgressCallback
from xorjobs.models.kernel_paths import sum4
from xorjobs.models.result import TrainResult
from xorjobs.models.stopping import COST_BELOW, NO_STOP, SOLVED, StopRule
from xorjobs.models.threads import one_thread
from xorjobs.models.train import describe_device

Tensor = torch.Tensor


class StepPack(Protocol):
    """J jobs of one variant, trained a step at a time (one class per engine and kind of variant)."""

    def forward(self) -> list[Tensor]:
        """Every layer's activations for all jobs: what ``model(x)`` computes for each."""
        ...

    def hypothesis(self, acts: list[Tensor]) -> Tensor:
        """The model's output ``(4, J)`` in ``acts``."""
        ...

    def costs(self, acts: list[Tensor], alive: Tensor) -> Tensor:
        """The ``(J,)`` costs of ``acts`` (members not ``alive`` may get any value)."""
        ...

    def step(self, acts: list[Tensor]) -> None:
        """The backward pass and the update for every job (``acts``: this step's ``forward()``)."""
        ...

    def select(self, keep: Tensor) -> StepPack:
        """A pack of the members at indices ``keep`` (ascending), each exactly where it is now.

        A member's whole state between steps is its parameter row(s) and learning rate (gradients
        and activations are rewritten every step), and every op is per member, so the smaller pack
        continues each kept member as the larger one would have.
        """
        ...


def check_jobs(variant: str, seeds: Sequence[int], lrs: Sequence[float]) -> None:
    """The argument checks every engine makes first."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; expected one of {', '.join(VARIANTS)}")
    if len(seeds) != len(lrs):
        raise ValueError(f"{len(seeds)} seeds but {len(lrs)} learning rates")


class Stops:
    """Where and why each job of a pack stopped early (``models.stopping``); ``None``: it did not."""

    def __init__(self, jobs: int) -> None:
        self.step: list[int | None] = [None] * jobs
        self.reason: list[str | None] = [None] * jobs

    def record(self, step: int, members: Sequence[int], below: Tensor, solved: Tensor) -> None:
        """``below`` / ``solved``: this logged step's (J,) masks (``StopRule.reasons``) of the rows whose
        jobs are ``members``."""
        for row in (below | solved).nonzero().flatten().tolist():
            job = members[row]
            self.step[job] = step
            self.reason[job] = COST_BELOW if bool(below[row]) else SOLVED


def run_pack(
    make_pack: Callable[[], StepPack],
    variant: str,
    jobs: int,
    steps: int,
    log_every: int,
    device: torch.device,
    on_progress: PackProgressCallback | None,
    progress_interval_s: float,
    *,
    single_threaded: bool,
    stop: StopRule = NO_STOP,
) -> list[TrainResult]:
    """Train the ``jobs`` members of ``make_pack()`` (built inside the loop's thread setting).

    A member whose solo run would raise (NaN hypothesis in an ``nn``/``wide_deep`` run) is reported by
    ``PackedMemberError`` after the others finish. With an active ``stop`` rule a member that stops at
    logged step s (or fails there) gets its final hypothesis from the forward pass after step s's
    update, as its run with ``steps = s + 1`` does, and leaves the pack: the remaining steps run on a
    pack of the others only (``StepPack.select``).
    """
    if log_every < 1:
        raise ValueError("log_every must be at least 1")
    if not jobs:
        return []
    log = PackedCostLog(jobs, on_progress, progress_interval_s)
    stops = Stops(jobs)
    failed = torch.zeros(jobs, dtype=torch.bool, device=device)
    failed_jobs = [False] * jobs
    final = torch.empty(4, jobs)
    members = list(range(jobs))  # row i of the current pack is job members[i]
    with one_thread() if single_threaded else contextlib.nullcontext(), torch.no_grad():
        pack = make_pack()
        y = xor_data(device)[1]
        can_fail = variant != "backprop"  # only BCELoss checks its input; the script's cost just goes NaN
        for step in range(steps):
            acts = pack.forward()
            logged = step % log_every == 0
            if can_fail and (logged or step == steps - 1):
                # A NaN hypothesis makes the last bias NaN for good, so every later step's hypothesis is
                # NaN too: checking at logged steps (and the last one) finds each failure before any
                # cost its solo run would not have logged.
                failed |= torch.isnan(pack.hypothesis(acts)).any(0)
            leaving = None
            if logged:
                alive = ~failed
                costs = pack.costs(acts, alive)
                log.log(step, costs, alive)
                if stop.active:
                    below, solved = stop.reasons(costs, pack.hypothesis(acts), y, alive)
                    stops.record(step, members, below, solved)
                    leaving = below | solved | failed
            pack.step(acts)
            if leaving is not None and step < steps - 1 and bool(leaving.any()):
                compacted = _compact(pack, leaving, members, failed, failed_jobs, final, log)
                if compacted is None:
                    break
                pack = compacted
                members = [job for job, left in zip(members, leaving.tolist(), strict=True) if not left]
                failed = failed[~leaving]
        else:
            final[:, members] = pack.hypothesis(pack.forward()).cpu()  # (4, J)
            for job, is_failed in zip(members, failed.cpu().tolist(), strict=True):
                failed_jobs[job] = is_failed
    return pack_results(final, failed_jobs, log, device, stops)


def _compact(
    pack: StepPack,
    leaving: Tensor,
    members: list[int],
    failed: Tensor,
    failed_jobs: list[bool],
    final: Tensor,
    log: PackedCostLog,
) -> StepPack | None:
    """Finish the members ``leaving`` the pack after this step's update, and return the pack of the
    others (``None`` when none is left).

    The leavers' final hypothesis is the next forward pass's, the one their runs end with; the forward
    pass covers every member, but each member's numbers are its own, so the others are untouched.
    """
    after = pack.hypothesis(pack.forward()).cpu()
    left = leaving.cpu().tolist()
    for row, (job, is_leaving, is_failed) in enumerate(
        zip(members, left, failed.cpu().tolist(), strict=True)
    ):
        if is_leaving:
            final[:, job] = after[:, row]
            failed_jobs[job] = is_failed
    keep = (~leaving).nonzero().flatten()
    if not keep.numel():
        return None
    log.regroup([job for job, is_leaving in zip(members, left, strict=True) if not is_leaving])
    return pack.select(keep)


def pack_results(
    final: Tensor,
    failed: Sequence[bool],
    log: PackedCostLog,
    device: torch.device,
    stops: Stops | None = None,
) -> list[TrainResult]:
    """A pack's ending, shared by every pack engine: labels and accuracy from the final hypotheses
    ``final`` (4, J), as the seed computes them, where and why members stopped early (``stops``), and
    the ``failed`` members reported as their solo runs would fail (``PackedMemberError``, with the
    others' results)."""
    jobs = final.shape[1]
    stops = stops if stops is not None else Stops(jobs)
    y = xor_data(torch.device("cpu"))[1][:, 0:1]
    predicted = (final > 0.5).float()
    # The mean of four 0/1 values: exact in any order.
    accuracy = sum4((predicted == y).float(), out=torch.empty(jobs)) / 4
    log.flush()
    device_name, cpu_capability = describe_device(device)
    hypotheses, labels, accuracies = final.t().tolist(), predicted.t().tolist(), accuracy.tolist()
    results: list[TrainResult | None] = []
    errors: dict[int, RuntimeError] = {}
    for job in range(jobs):
        if failed[job]:
            errors[job] = _solo_error(final[:, job])
            results.append(None)
            continue
        results.append(
            TrainResult(
                costs=log.costs[job],
                hypothesis=hypotheses[job],
                predicted=labels[job],
                accuracy=accuracies[job],
                device_name=device_name,
                cpu_capability=cpu_capability,
                stopped_at_step=stops.step[job],
                stop_reason=stops.reason[job],
            )
        )
    if errors:
        raise PackedMemberError(errors, results, {job: log.costs[job] for job in errors})
    return [r for r in results if r is not None]


def _solo_error(hypothesis: Tensor) -> RuntimeError:
    """The exception ``BCELoss`` raises in the solo run for this NaN hypothesis."""
    y = xor_data(torch.device("cpu"))[1]
    try:
        F.binary_cross_entropy(hypothesis.reshape(4, 1), y)
    except RuntimeError as error:
        return error
    return RuntimeError("hypothesis outside [0, 1]")  # pragma: no cover - BCELoss always raises on NaN
