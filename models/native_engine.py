"""The native bit-exact engine: ``nn`` and ``wide_deep`` packs trained by a C kernel, every member bit
for bit equal to its solo ``models.train`` run.

``models.packed_exact`` reaches solo's numbers with ~100 torch ops per step over rows of jobs and is
bound by per-op dispatch. This engine runs the same arithmetic paths (``models.native_tape`` writes them
down: the measured sgemm trees, ATen's sigmoid split, SLEEF and glibc ``expf``, the solo sums, fused
SGD) as one tape that the kernel (``models.native_kernel``) runs over blocks of jobs held in cache, a
job per vector lane, all steps of a progress interval in one call.

It runs only where it was built and where its start-up self-check passes on this machine: per-primitive
probes (``models.native_probes``) *and* whole runs compared with solo ones (``models.self_check``).
Elsewhere (no build, a capability other than AVX2/AVX-512, a failed check) callers use the exact
packed engine, which gives the same numbers more slowly. ``backprop`` is not offered: its script's
``torch.exp``/``torch.log`` are MKL VML, whose algorithm the kernel does not reproduce.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from xorjobs.defaults import DEFAULT_LOG_EVERY, DEFAULT_STEPS
from xorjobs.models.cost_log import PackedCostLog
from xorjobs.models.engine import PackProgressCallback
from xorjobs.models.native_kernel import (
    Kernel,
    KernelChoices,
    Pack,
    library_path,
    load_kernel,
    machine_choices,
    sleef_available,
    sleef_entry,
)
from xorjobs.models.native_tape import SequentialTape, sequential_tape
from xorjobs.models.pack_loop import Stops, check_jobs, pack_results
from xorjobs.models.result import TrainResult
from xorjobs.models.self_check import matches_solo
from xorjobs.models.stopping import NO_STOP, StopRule

log = logging.getLogger(__name__)

NATIVE_VARIANTS = frozenset({"nn", "wide_deep"})
_NEVER_FAILED = np.iinfo(np.int32).max
# What a lane-step costs in the kernel's small blocks, relative to its big ones (measured on AVX-512:
# nn's few slots stay in registers and cache either way; wide_deep's wider products gain from 128).
_SMALL_BLOCK_COST = {"nn": 1.05, "wide_deep": 1.25}
_TARGET_CALL_SECONDS = 0.25  # steps per kernel call are sized to about this, so progress flows


@dataclass(frozen=True)
class _Ready:
    kernel: Kernel
    choices: KernelChoices


class NativeEngine:
    """The ``Engine`` that packs ``nn``/``wide_deep`` on the CPU in native code, solo's numbers exactly.

    ``choices`` and ``library`` default to what this machine reports and the installed build; tests
    pass others (a wrong primitive, a missing library) to see the self-check refuse them.
    """

    name = "native"
    packs = True

    def __init__(
        self, choices: KernelChoices | None = None, library: Path | str | None = "installed"
    ) -> None:
        self._choices = choices
        self._library = library
        self._checked: dict[tuple[str, int], bool] = {}
        self._forced_block: int | None = None  # the self-check trains at each block size in turn

    # --- availability ------------------------------------------------------------------------------

    def unavailable_reason(self) -> str | None:
        """Why this engine cannot run here at all (``None``: it can; the self-check decides the rest)."""
        return self._ready()[1]

    def _ready(self) -> tuple[_Ready | None, str | None]:
        path = library_path() if self._library == "installed" else self._library
        kernel = load_kernel(Path(path) if path is not None else None)
        if kernel is None:
            if path is not None and Path(path).is_file():
                return None, f"the native kernel at {path} does not load (built from other sources?)"
            return None, "the native kernel is not built on this machine"
        choices = self._choices if self._choices is not None else machine_choices()
        if choices is None:
            capability = torch.backends.cpu.get_cpu_capability()
            return None, f"no native code path for CPU capability {capability}"
        if not kernel.supports(choices.isa):
            return None, "this CPU lacks the kernel's instruction set"
        if not sleef_available(choices):
            return None, f"torch's library has no {choices.sleef_symbol}"
        return _Ready(kernel, choices), None

    def self_check(self, variant: str, device: str, steps: int) -> bool:
        """Per-primitive probes, then packs compared with solo runs bit for bit (cached per process)."""
        if torch.device(device).type != "cpu" or variant not in NATIVE_VARIANTS:
            return False
        key = (variant, steps)
        if key not in self._checked:
            self._checked[key] = self._check(variant, steps)
        return self._checked[key]

    def _check(self, variant: str, steps: int) -> bool:
        from xorjobs.models.native_probes import failed_probes

        ready, reason = self._ready()
        if ready is None:
            log.info("native engine off for %s: %s", variant, reason)
            return False
        failures = failed_probes(ready.kernel, ready.choices, variant)
        if failures:
            log.warning("native engine off for %s: probes differ from solo: %s", variant, ", ".join(failures))
            return False
        # Packs run in big blocks, or small ones when few lanes are left (``_NativeRun._block_for``):
        # each size's compiled loops are checked.
        for block in (ready.kernel.block, ready.kernel.small_block):
            self._forced_block = block
            try:
                if not matches_solo(self, variant, steps):
                    log.warning("native engine off for %s: %d-lane blocks differ from solo", variant, block)
                    return False
            finally:
                self._forced_block = None
        return True

    # --- training ----------------------------------------------------------------------------------

    def train(
        self,
        variant: str,
        seeds: Sequence[int],
        lrs: Sequence[float],
        *,
        steps: int = DEFAULT_STEPS,
        log_every: int = DEFAULT_LOG_EVERY,
        device: str = "cpu",
        on_progress: PackProgressCallback | None = None,
        progress_interval_s: float = 2.0,
        stop: StopRule = NO_STOP,
    ) -> list[TrainResult]:
        check_jobs(variant, seeds, lrs)
        if variant not in NATIVE_VARIANTS:
            raise ValueError(f"the native engine trains {' and '.join(sorted(NATIVE_VARIANTS))} only")
        torch_device = torch.device(device)
        if torch_device.type != "cpu":
            raise ValueError("the native engine runs on the CPU only")
        if log_every < 1:
            raise ValueError("log_every must be at least 1")
        if not seeds:
            return []
        ready, reason = self._ready()
        if ready is None:
            raise RuntimeError(f"the native engine cannot run here: {reason}")
        run = _NativeRun(ready, variant, seeds, lrs, steps, log_every, self._forced_block)
        log_ = PackedCostLog(len(seeds), on_progress, progress_interval_s)
        if stop.active:
            stops = Stops(len(seeds))
            final, failed = run.train_stopping(log_, stop, stops)
            return pack_results(final, failed, log_, torch_device, stops)
        final, fail_step = run.train(log_)
        return _results(final, fail_step, log_, torch_device)


class _NativeRun:
    """One pack's buffers and the kernel calls that train it."""

    def __init__(
        self,
        ready: _Ready,
        variant: str,
        seeds: Sequence[int],
        lrs: Sequence[float],
        steps: int,
        log_every: int,
        forced_block: int | None = None,
    ) -> None:
        self.kernel, self.choices, self.variant = ready.kernel, ready.choices, variant
        self.forced_block = forced_block
        self.jobs = len(seeds)
        self.block = self._block_for(self.jobs)
        self.padded = -(-self.jobs // self.block) * self.block
        self.steps = steps
        # Any interval longer than the run logs step 0 only; the kernel's counter is 32-bit.
        self.log_every = min(log_every, max(steps, 1))
        self.tape: SequentialTape = _tape(variant, self.choices, self.block)
        self.theta = _initial_theta(self.tape, seeds, self.padded)
        # SGD's alpha: the double -lr cast to float by the add kernel; padding lanes do not move.
        self.alpha = np.zeros(self.padded, dtype=np.float32)
        self.alpha[: self.jobs] = np.array([-float(lr) for lr in lrs], dtype=np.float64).astype(np.float32)
        self.fail_step = np.full(self.padded, _NEVER_FAILED, dtype=np.int32)
        self.pack = self._pack()

    def _block_for(self, lanes: int) -> int:
        """The block size that computes ``lanes`` lanes cheapest: small blocks waste fewer padding
        lanes, big ones cost less per lane (``_SMALL_BLOCK_COST``)."""
        if self.forced_block is not None:
            return self.forced_block
        big, small = self.kernel.block, self.kernel.small_block
        big_cost = -(-lanes // big) * big
        small_cost = -(-lanes // small) * small * _SMALL_BLOCK_COST[self.variant]
        return small if small_cost < big_cost else big

    def _pack(self) -> Pack:
        """The kernel's view of ``theta``, ``alpha`` and ``padded`` (rebuilt when lanes are regrouped;
        it points into those arrays, which this object keeps alive)."""
        tape = self.tape
        return Pack(
            ops=tape.ops.ctypes.data,
            n_forward=tape.n_forward,
            n_cost=tape.n_cost,
            n_backward=tape.n_backward,
            init=tape.init.ctypes.data,
            nslots=tape.init.shape[0],
            theta=self.theta.ctypes.data,
            rows=tape.rows,
            param_slot=tape.param_slot,
            alpha=self.alpha.ctypes.data,
            alpha_slot=tape.alpha_slot,
            jobs=self.padded,
            hyp_slots=tape.hyp_slots.ctypes.data,
            n_hyp=len(tape.hyp_slots),
            cost_slot=tape.cost_slot,
            log_every=self.log_every,
            last_step=self.steps - 1,
            sleef=sleef_entry(self.choices),
            block=self.block,
        )

    def train(self, cost_log: PackedCostLog) -> tuple[torch.Tensor, np.ndarray]:
        """Every step, logging costs as they come; ``(final hypothesis (4, jobs), first failed step)``."""
        hyp = np.empty((4, self.padded), dtype=np.float32)
        step, chunk = 0, max(1, min(self.steps, 200_000 // self.padded))
        while True:
            end = min(self.steps, step + chunk)
            logged = list(range(-(-step // self.log_every) * self.log_every, end, self.log_every))
            costs = np.empty((len(logged), self.padded), dtype=np.float32)
            started = time.monotonic()
            self.kernel.train(
                self.choices, self.pack, step, end, costs, self.fail_step, hyp if end == self.steps else None
            )
            elapsed = time.monotonic() - started
            fail_step = torch.from_numpy(self.fail_step[: self.jobs].copy())
            values = torch.from_numpy(costs[:, : self.jobs])
            for index, logged_step in enumerate(logged):
                cost_log.log(logged_step, values[index], fail_step > logged_step)
            if end == self.steps:
                break
            # Aim each call at ~_TARGET_CALL_SECONDS so on_progress is called about as often as asked.
            chunk = max(1, int((end - step) / max(elapsed, 1e-6) * _TARGET_CALL_SECONDS))
            step = end
        return torch.from_numpy(hyp[:, : self.jobs].copy()), self.fail_step[: self.jobs].copy()

    def train_stopping(
        self, cost_log: PackedCostLog, rule: StopRule, stops: Stops
    ) -> tuple[torch.Tensor, list[bool]]:
        """Every step with early stopping: ``(final hypothesis (4, jobs), failed per job)``.

        The kernel runs in segments that end right after each logged step s (and, for the solved
        rule, one that ends at s too, whose closing forward pass is step s's: the hypothesis the rule
        looks at). Each segment closes with a forward pass on the updated weights, the final
        hypothesis of a member that stops at s. Members that stop or fail leave; the others are
        regrouped into fewer lanes (their theta columns and learning rates), and in small blocks once
        few are left (``_block_for``); the kernel goes on with those: every lane's arithmetic is its
        own, so a lane's numbers do not depend on which other lanes share its block, or its size.

        A segment's Python work is kept to a few array operations (it runs once per logged step): the
        cost log gets every logged step as a whole pack's row (the members that left are not alive),
        so it is never regrouped.
        """
        jobs, log_every, steps = self.jobs, self.log_every, self.steps
        members = np.arange(jobs)  # lane i holds job members[i]
        final = np.empty((4, jobs), dtype=np.float32)
        failed = [False] * jobs
        y = torch.tensor([[0.0], [1.0], [1.0], [0.0]])
        hyp = np.empty((4, self.padded), dtype=np.float32)
        hyp_step = -1  # the step whose forward pass `hyp` holds
        step = 0
        while True:
            count = len(members)
            next_logged = -(-step // log_every) * log_every
            if rule.when_solved and next_logged == step < steps and hyp_step != step:
                self._call(step, step, hyp)  # only the forward pass of step `step`
                hyp_step = step
            if next_logged == step:
                end = step + 1
            elif rule.when_solved:
                end = next_logged
            else:
                end = next_logged + 1
            # A long interval between logged steps still runs in calls of bounded size, so progress
            # flows; only a call that ends just past a logged step holds that step's cost.
            end = min(end, steps, step + max(1, 200_000 // self.padded))
            solved_hyp = torch.from_numpy(hyp[:, :count].copy()) if hyp_step == step else None
            costs = self._call(step, end, hyp)
            hyp_step = end
            fail_step = self.fail_step[:count]
            logged = range(next_logged, end, log_every)
            for index, logged_step in enumerate(logged):
                row = np.full(jobs, np.nan, dtype=np.float32)
                row[members] = costs[index, :count]
                alive_row = np.zeros(jobs, dtype=bool)
                alive_row[members] = fail_step > logged_step
                cost_log.log(logged_step, torch.from_numpy(row), torch.from_numpy(alive_row))
            if not logged:
                if end == steps:
                    break
                step = end
                continue
            # `end` is just past a logged step s: its cost, and for the solved rule its forward pass.
            s = logged[-1]
            alive = torch.from_numpy(fail_step > s)
            hypothesis = solved_hyp if solved_hyp is not None else torch.zeros(4, count)
            below, solved = rule.reasons(torch.from_numpy(costs[-1, :count]), hypothesis, y, alive)
            stopping = (below | solved).numpy()
            if stopping.any():
                stops.record(s, members.tolist(), below, solved)
            if end == steps:
                break  # s was the last step: everyone's final hypothesis is the closing forward pass
            step = end
            leaving = stopping | (fail_step <= s)
            if leaving.any():
                final[:, members[leaving]] = hyp[:, :count][:, leaving]
                for job in members[leaving & (fail_step <= s)].tolist():
                    failed[job] = True
                lanes = np.flatnonzero(~leaving)
                if not len(lanes):
                    return torch.from_numpy(final), failed
                members = members[lanes]
                self._regroup(lanes)
                hyp = np.empty((4, self.padded), dtype=np.float32)
                hyp_step = -1
        final[:, members] = hyp[:, : len(members)]
        for lane, job in enumerate(members.tolist()):
            failed[job] = bool(self.fail_step[lane] != _NEVER_FAILED)
        return torch.from_numpy(final), failed

    def _call(self, step0: int, step1: int, hyp: np.ndarray) -> np.ndarray:
        """Steps [step0, step1) and a closing forward pass into ``hyp``; the logged steps' costs."""
        first = -(-step0 // self.log_every) * self.log_every
        costs = np.empty((len(range(first, step1, self.log_every)), self.padded), dtype=np.float32)
        self.kernel.train(self.choices, self.pack, step0, step1, costs, self.fail_step, hyp)
        return costs

    def _regroup(self, lanes: np.ndarray) -> None:
        """Keep only ``lanes`` (ascending), packed into the fewest blocks; padding lanes do not move."""
        count = len(lanes)
        self.block = self._block_for(count)
        self.tape = _tape(self.variant, self.choices, self.block)
        self.padded = -(-count // self.block) * self.block
        theta = np.zeros((self.theta.shape[0], self.padded), dtype=np.float32)
        theta[:, :count] = self.theta[:, lanes]
        alpha = np.zeros(self.padded, dtype=np.float32)
        alpha[:count] = self.alpha[lanes]
        fail_step = np.full(self.padded, _NEVER_FAILED, dtype=np.int32)
        fail_step[:count] = self.fail_step[lanes]
        self.theta, self.alpha, self.fail_step = theta, alpha, fail_step
        self.pack = self._pack()


_TAPES: dict[tuple[str, KernelChoices, int], SequentialTape] = {}


def _tape(variant: str, choices: KernelChoices, block: int) -> SequentialTape:
    key = (variant, choices, block)
    if key not in _TAPES:
        _TAPES[key] = sequential_tape(variant, choices, block)
    return _TAPES[key]


def _initial_theta(tape: SequentialTape, seeds: Sequence[int], padded: int) -> np.ndarray:
    """Every job's ``nn.Linear`` default init as (rows, padded) rows of W (out, in) then b per layer;
    padding lanes are zeros.

    The same numbers as ``models.initial_weights.sequential_init``, with one generator call per job.
    There, each tensor is ``uniform_(-bound, bound)`` (``kaiming_uniform_(a=sqrt(5))`` computes its
    bound as below, then the bias's), which draws its elements in order from the seed's stream and
    makes each ``x * (to - from) + from`` in double (ATen's ``uniform_real`` for float on the CPU;
    ``x`` is a 24-bit draw times 2^-24), rounded to float. So one ``uniform_(0, 1)`` over a job's whole
    row draws the same ``x`` values (exactly: ``x * 1 + 0``), and the per-tensor scaling is done here
    for all jobs at once, in double, as ATen does it (the product is exact in double, so whether ATen
    fuses it into an FMA does not matter). ~4x cheaper than a generator call per tensor, which was
    ~10% of a full ``nn`` run; tests/test_native_engine.py compares the two.
    """
    low = np.empty(tape.rows, dtype=np.float64)
    span = np.empty(tape.rows, dtype=np.float64)
    at = 0
    gain = torch.nn.init.calculate_gain("leaky_relu", math.sqrt(5))
    for fan_in, fan_out in tape.shapes:
        weight_bound = math.sqrt(3.0) * (gain / math.sqrt(fan_in))
        bias_bound = 1 / math.sqrt(fan_in)
        for count, bound in ((fan_in * fan_out, weight_bound), (fan_out, bias_bound)):
            # uniform_'s from and to are floats (ATen casts them first), widened to double.
            start, stop = float(np.float32(-bound)), float(np.float32(bound))
            low[at : at + count] = start
            span[at : at + count] = stop - start
            at += count
    draws = torch.empty(len(seeds), tape.rows)
    generator = torch.Generator()
    for job, seed in enumerate(seeds):
        generator.manual_seed(seed)
        draws[job].uniform_(0.0, 1.0, generator=generator)
    theta = np.zeros((tape.rows, padded), dtype=np.float32)
    theta[:, : len(seeds)] = (draws.numpy().astype(np.float64) * span + low).astype(np.float32).T
    return theta


def _results(
    final: torch.Tensor, fail_step: np.ndarray, cost_log: PackedCostLog, device: torch.device
) -> list[TrainResult]:
    """``models.pack_loop.run_pack``'s ending (``pack_results``), with the members that failed."""
    return pack_results(final, [bool(step != _NEVER_FAILED) for step in fail_step], cost_log, device)
