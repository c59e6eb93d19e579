"""Train one job of any variant, reporting its logged costs as it goes."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

from xorjobs.defaults import DEFAULT_LOG_EVERY, DEFAULT_STEPS, VARIANTS
from xorjobs.models.backprop import train_backprop
from xorjobs.models.data import accuracy_of, xor_data
from xorjobs.models.networks import LAYER_WIDTHS, build_sequential
from xorjobs.models.result import TrainResult
from xorjobs.models.stopping import NO_STOP, StopRule

CostChunk = list[tuple[int, float]]
ProgressCallback = Callable[[CostChunk], None]


class _CostLog:
    """Collects logged costs and hands new ones to ``on_progress`` at most every ``interval_s``.

    ``cost.item()`` is only called at logged steps, exactly when the seed prints, so logging never
    changes what is computed. ``on_progress`` may raise to stop training (lease lost, cancelled).
    """

    def __init__(self, on_progress: ProgressCallback | None, interval_s: float) -> None:
        self.costs: CostChunk = []
        self._flushed = 0
        self._on_progress = on_progress
        self._interval_s = interval_s
        self._last_flush = time.monotonic()

    def log(self, step: int, cost: torch.Tensor) -> None:
        self.costs.append((step, cost.item()))
        if self._on_progress is not None and time.monotonic() - self._last_flush >= self._interval_s:
            self.flush()

    def flush(self) -> None:
        """Hand over the costs logged since the last flush (the caller writes the rest at the end)."""
        if self._on_progress is not None:
            self._on_progress(self.costs[self._flushed :])
            self._flushed = len(self.costs)
            self._last_flush = time.monotonic()


class _StopWatch:
    """Asks a ``StopRule`` at logged steps (after the cost is logged) and remembers where and why."""

    def __init__(self, rule: StopRule, log: _CostLog, y: torch.Tensor) -> None:
        self.rule, self.log, self.y = rule, log, y
        self.step: int | None = None
        self.reason: str | None = None

    def __call__(self, step: int, hypothesis: torch.Tensor) -> bool:
        if not self.rule.active:
            return False
        self.reason = self.rule.reason(self.log.costs[-1][1], hypothesis, self.y)
        if self.reason is not None:
            self.step = step
        return self.reason is not None


def _train_sequential(
    variant: str,
    seed: int,
    lr: float,
    steps: int,
    device: torch.device,
    log: _CostLog,
    log_every: int,
    stop: StopRule,
) -> tuple[torch.Tensor, torch.Tensor, _StopWatch]:
    """The seed's "xor-nn" / "xor-nn-wide-deep" script with ``lr``, ``steps`` and ``log_every`` as inputs."""
    torch.manual_seed(seed)
    if device.type == "cuda":
        torch.cuda.manual_seed_all(seed)
    x, y = xor_data(device)
    model = build_sequential(variant).to(device)
    criterion = torch.nn.BCELoss().to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    watch = _StopWatch(stop, log, y)
    for step in range(steps):
        optimizer.zero_grad()
        hypothesis = model(x)
        cost = criterion(hypothesis, y)
        cost.backward()
        optimizer.step()
        if step % log_every == 0:
            log.log(step, cost)
            if watch(step, hypothesis):
                break  # after this step's update: the loop of a run with steps = step + 1
    with torch.no_grad():
        hypothesis = model(x)
    return hypothesis, y, watch


def describe_device(device: torch.device) -> tuple[str, str]:
    """``(device name, CPU capability)`` for the job's record of what ran it."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    return name, torch.backends.cpu.get_cpu_capability()


def train(
    variant: str,
    seed: int,
    lr: float,
    steps: int = DEFAULT_STEPS,
    log_every: int = DEFAULT_LOG_EVERY,
    device: str = "cpu",
    on_progress: ProgressCallback | None = None,
    progress_interval_s: float = 2.0,
    stop: StopRule = NO_STOP,
) -> TrainResult:
    """Train one job and return its record.

    On the CPU the result equals the seed script's output bit for bit at any seed and lr. A diverging
    run (NaN/inf cost) is not an error: its costs and accuracy are returned as computed. With an
    active ``stop`` rule the loop ends after the first logged step where it holds
    (``models.stopping``), and the result says where and why.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; expected one of {', '.join(VARIANTS)}")
    torch_device = torch.device(device)
    log = _CostLog(on_progress, progress_interval_s)
    if variant == "backprop":
        watch = _StopWatch(stop, log, xor_data(torch_device)[1])
        hypothesis, y = train_backprop(
            seed, lr, steps, log_every, torch_device, log.log, watch if stop.active else None
        )
    else:
        assert variant in LAYER_WIDTHS
        hypothesis, y, watch = _train_sequential(variant, seed, lr, steps, torch_device, log, log_every, stop)
    predicted, accuracy = accuracy_of(hypothesis, y)
    device_name, cpu_capability = describe_device(torch_device)
    return TrainResult(
        costs=log.costs,
        hypothesis=hypothesis.detach().cpu().reshape(-1).tolist(),
        predicted=predicted.detach().cpu().reshape(-1).tolist(),
        accuracy=accuracy,
        device_name=device_name,
        cpu_capability=cpu_capability,
        stopped_at_step=watch.step,
        stop_reason=watch.reason if watch.step is not None else None,
    )
