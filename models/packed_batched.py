"""Packed training on an accelerator: K jobs as plain batched maths, one CUDA graph per step.

On a GPU bit-identity with the CPU is not a goal (its kernels round differently from MKL and SLEEF, and
the seed's runs are chaotic), so this engine is the straightforward one: each job's parameters are one
slice of a ``(J, rows)`` buffer, layers are batched matrix products (``baddbmm``/``bmm``), and the
backward pass is written out by hand with the formulas autograd uses for ``Linear``, ``Sigmoid`` and
``BCELoss`` (or the backprop script's own), so a step is a fixed list of kernels that a CUDA graph can
capture. A step then costs a handful of microseconds of launch work whatever the pack size, instead of
~40 Python-dispatched kernels.

Every job starts from the weights its solo run gets (the same per-seed CPU generators as the exact CPU
engine), and every operation is per job, so a diverging member never touches the others. ``BCELoss``
is computed as ATen does (logs clamped at -100) without its input check, which on CUDA is a device-side
assert that would kill the whole process; a member whose hypothesis goes NaN is reported instead, as on
the CPU.

The same code runs on the CPU (without graphs): tests check its maths there against solo runs.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch

from xorjobs.defaults import DEFAULT_LOG_EVERY, DEFAULT_STEPS
from xorjobs.models.data import xor_data
from xorjobs.models.engine import PackProgressCallback
from xorjobs.models.initial_weights import backprop_init, sequential_init
from xorjobs.models.networks import LAYER_WIDTHS
from xorjobs.models.pack_loop import check_jobs, run_pack
from xorjobs.models.result import TrainResult
from xorjobs.models.stopping import NO_STOP, StopRule

Tensor = torch.Tensor

# ``binary_cross_entropy_backward``'s EPSILON, and the floor ATen puts under BCELoss's logs.
_BCE_EPSILON = 1e-12
_LOG_FLOOR = -100.0


def _params_buffer(
    jobs: int, shapes: Sequence[tuple[int, ...]], device: torch.device
) -> tuple[Tensor, list[Tensor]]:
    """One ``(J, rows)`` buffer and a ``(J, *shape)`` view of it per parameter, in ``shapes`` order."""
    rows = sum(int(torch.Size(shape).numel()) for shape in shapes)
    buffer = torch.zeros(jobs, rows, device=device)
    views, row = [], 0
    for shape in shapes:
        size = int(torch.Size(shape).numel())
        views.append(buffer[:, row : row + size].view(jobs, *shape))
        row += size
    return buffer, views


class BatchedSequentialPack:
    """``nn`` / ``wide_deep`` for J jobs: Linear + Sigmoid layers, BCELoss and SGD, batched."""

    def __init__(
        self,
        variant: str,
        seeds: Sequence[int],
        lrs: Sequence[float],
        device: torch.device,
        *,
        state: tuple[Tensor, Tensor] | None = None,
    ) -> None:
        """``state``: ``(theta, neg_lr)`` of members to continue (``select``) instead of fresh ones."""
        self.variant, self.device = variant, device
        widths = LAYER_WIDTHS[variant]
        self.jobs = jobs = len(seeds) if state is None else state[0].shape[0]
        layers = list(itertools.pairwise(widths))
        shapes: list[tuple[int, ...]] = []
        for k, n in layers:
            shapes += [(n, k), (n,)]  # nn.Linear's (out, in) weight, then its bias
        self.theta, params = _params_buffer(jobs, shapes, device)
        self.grad, grads = _params_buffer(jobs, shapes, device)
        self.w, self.b = params[0::2], params[1::2]
        self.gw, self.gb = grads[0::2], grads[1::2]
        if state is not None:
            self.theta.copy_(state[0])
            self.neg_lr = state[1].clone()
        else:
            cpu_theta, cpu_views = _params_buffer(jobs, shapes, torch.device("cpu"))
            for job, seed in enumerate(seeds):
                for layer, (weight, bias) in enumerate(sequential_init(layers, seed)):
                    cpu_views[2 * layer][job] = weight
                    cpu_views[2 * layer + 1][job] = bias
            self.theta.copy_(cpu_theta)
            # SGD adds ``grad * -lr`` with the double lr cast to float, per job.
            self.neg_lr = torch.tensor([-float(lr) for lr in lrs], dtype=torch.float32, device=device)[
                :, None
            ]
        x, y = xor_data(device)
        self.x = x.expand(jobs, 4, 2)
        self.y = y  # (4, 1), broadcast over jobs

    def forward(self) -> list[Tensor]:
        """Activations ``(J, 4, units)`` of every layer, input first."""
        acts = [self.x]
        for w, b in zip(self.w, self.b, strict=True):
            acts.append(torch.sigmoid(torch.baddbmm(b.unsqueeze(1), acts[-1], w.transpose(1, 2))))
        return acts

    def hypothesis(self, acts: list[Tensor]) -> Tensor:
        """``(4, J)``."""
        return acts[-1][:, :, 0].t()

    def costs(self, acts: list[Tensor], alive: Tensor) -> Tensor:
        """``BCELoss()(hypothesis, y)`` per job, as ATen computes it but without its input check."""
        p = acts[-1][:, :, 0]
        y = self.y[:, 0]
        log_p = torch.log(p).clamp_min(_LOG_FLOOR)
        log_q = torch.log1p(-p).clamp_min(_LOG_FLOOR)
        return -(y * log_p + (1 - y) * log_q).mean(1)

    def step(self, acts: list[Tensor]) -> None:
        """``cost.backward(); optimizer.step()`` for every job, with autograd's formulas."""
        p = acts[-1]
        # binary_cross_entropy_backward, reduction mean: (p - y) / max((1 - p) p, eps) / 4
        grad = (p - self.y) / ((1 - p) * p).clamp_min(_BCE_EPSILON) / 4
        for layer in reversed(range(len(self.w))):
            a, h = acts[layer], acts[layer + 1]
            gz = grad * (1 - h) * h  # sigmoid_backward
            torch.sum(gz, dim=1, out=self.gb[layer])
            torch.bmm(gz.transpose(1, 2), a, out=self.gw[layer])
            if layer:
                grad = torch.bmm(gz, self.w[layer])
        self.theta.addcmul_(self.grad, self.neg_lr)

    def select(self, keep: Tensor) -> BatchedSequentialPack:
        """The members ``keep`` (early stopping's compaction): a job's state is its theta row."""
        keep = keep.to(self.device)
        state = (self.theta.index_select(0, keep), self.neg_lr.index_select(0, keep))
        return BatchedSequentialPack(self.variant, [], [], self.device, state=state)


class BatchedBackpropPack:
    """The backprop script for J jobs, its own expressions batched (``+ 1e-7``, averaged bias grads)."""

    def __init__(
        self,
        seeds: Sequence[int],
        lrs: Sequence[float],
        device: torch.device,
        *,
        state: tuple[Tensor, Tensor] | None = None,
    ) -> None:
        """``state``: ``(theta, lr)`` of members to continue (``select``) instead of fresh ones."""
        self.device = device
        self.jobs = jobs = len(seeds) if state is None else state[0].shape[0]
        shapes: list[tuple[int, ...]] = [(2, 2), (2,), (2, 1), (1,)]
        self.theta, (self.w1, self.b1, self.w2, self.b2) = _params_buffer(jobs, shapes, device)
        self.grad, (self.gw1, self.gb1, self.gw2, self.gb2) = _params_buffer(jobs, shapes, device)
        if state is not None:
            self.theta.copy_(state[0])
            self.lr = state[1].clone()
        else:
            initial = torch.stack([torch.cat([p.reshape(-1) for p in backprop_init(seed)]) for seed in seeds])
            self.theta.copy_(initial)
            self.lr = torch.tensor([float(lr) for lr in lrs], dtype=torch.float32, device=device)[:, None]
        self.x, self.y = xor_data(device)

    def forward(self) -> list[Tensor]:
        """``(l1, a1, l2, y_pred)`` per job, each ``(J, 4, units)``."""
        l1 = torch.matmul(self.x, self.w1) + self.b1.unsqueeze(1)
        a1 = 1.0 / (1.0 + torch.exp(-l1))
        l2 = torch.matmul(a1, self.w2) + self.b2.unsqueeze(1)
        return [l1, a1, l2, 1.0 / (1.0 + torch.exp(-l2))]

    def hypothesis(self, acts: list[Tensor]) -> Tensor:
        return acts[3][:, :, 0].t()

    def costs(self, acts: list[Tensor], alive: Tensor) -> Tensor:
        y, p = self.y, acts[3]
        return -(y * torch.log(p) + (1 - y) * torch.log(1 - p)).mean(dim=(1, 2))

    def step(self, acts: list[Tensor]) -> None:
        _, a1, _, p = acts
        d_l2 = (p - self.y) / (p * (1.0 - p) + 1e-7) * (p * (1 - p))
        torch.bmm(a1.transpose(1, 2), d_l2, out=self.gw2)
        d_l1 = torch.matmul(d_l2, self.w2.transpose(1, 2)) * (a1 * (1 - a1))
        torch.matmul(self.x.t(), d_l1, out=self.gw1)
        torch.mean(d_l1, dim=1, out=self.gb1)
        torch.mean(d_l2, dim=1, out=self.gb2)
        self.theta.sub_(self.lr * self.grad)

    def select(self, keep: Tensor) -> BatchedBackpropPack:
        """The members ``keep`` (early stopping's compaction): a job's state is its theta row."""
        keep = keep.to(self.device)
        state = (self.theta.index_select(0, keep), self.lr.index_select(0, keep))
        return BatchedBackpropPack([], [], self.device, state=state)


BatchedPack = BatchedSequentialPack | BatchedBackpropPack


def make_batched_pack(
    variant: str, seeds: Sequence[int], lrs: Sequence[float], device: torch.device
) -> BatchedPack:
    if variant == "backprop":
        return BatchedBackpropPack(seeds, lrs, device)
    return BatchedSequentialPack(variant, seeds, lrs, device)


class GraphedPack:
    """A batched pack whose ``forward`` and ``step`` replay CUDA graphs captured once.

    Capturing needs a few eager warm-up steps (cuBLAS sets up its workspace on the first call); they
    change the parameters, so those are saved first and put back afterwards. The activations a replay
    writes live in the graph's memory pool, at the addresses captured, so ``forward`` returns the same
    tensors every step, refreshed.
    """

    def __init__(self, pack: BatchedPack) -> None:
        self.pack = pack
        saved = pack.theta.clone()
        side = torch.cuda.Stream()  # type: ignore[no-untyped-call]
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                pack.step(pack.forward())
        torch.cuda.current_stream().wait_stream(side)
        self._forward_graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self._forward_graph):
            self._acts = pack.forward()
        self._step_graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self._step_graph, pool=self._forward_graph.pool()):
            pack.step(self._acts)
        pack.theta.copy_(saved)
        pack.grad.zero_()

    def forward(self) -> list[Tensor]:
        self._forward_graph.replay()
        return self._acts

    def hypothesis(self, acts: list[Tensor]) -> Tensor:
        return self.pack.hypothesis(acts)

    def costs(self, acts: list[Tensor], alive: Tensor) -> Tensor:
        return self.pack.costs(acts, alive)

    def step(self, acts: list[Tensor]) -> None:
        self._step_graph.replay()

    def select(self, keep: Tensor) -> GraphedPack:
        """The members ``keep`` in a pack of their own, its graphs captured anew for the smaller size."""
        return GraphedPack(self.pack.select(keep))


def batched_pack(
    variant: str, seeds: Sequence[int], lrs: Sequence[float], device: torch.device, graphs: bool | None = None
) -> BatchedPack | GraphedPack:
    """The batched pack for ``device``, graphed on CUDA unless ``graphs`` says otherwise."""
    pack = make_batched_pack(variant, seeds, lrs, device)
    if graphs if graphs is not None else device.type == "cuda":
        return GraphedPack(pack)
    return pack


class BatchedEngine:
    """The ``Engine`` that packs on a GPU (or, for tests, the CPU) as plain batched maths.

    ``graphs`` chooses CUDA-graph replay (``None``: on CUDA) or eager steps, which compute the same.
    """

    name = "batched"
    packs = True

    def __init__(self, graphs: bool | None = None) -> None:
        self.graphs = graphs

    def self_check(self, variant: str, device: str, steps: int) -> bool:
        """Whether ``device`` is a CUDA device that is there: this engine promises no bit-exact numbers,
        and on the CPU the exact engine is the one to pack with."""
        return torch.device(device).type == "cuda" and torch.cuda.is_available()

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
        torch_device = torch.device(device)
        return run_pack(
            lambda: batched_pack(variant, seeds, lrs, torch_device, graphs=self.graphs),
            variant,
            len(seeds),
            steps,
            log_every,
            torch_device,
            on_progress,
            progress_interval_s,
            single_threaded=False,
            stop=stop,
        )
