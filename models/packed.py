"""Packed training: many jobs of one variant trained at once, each bit for bit equal to its solo run.

``train_packed`` stacks the parameters of K jobs along a job dimension and runs every step for all of them
with a few large tensor operations instead of K sets of tiny ones. The catch is exactness: a solo run
(``models.train``) is a chaotic process, so a single last-bit difference anywhere grows into a different
cost curve. Plain batched maths (``bmm``, ``sum(dim)``, one ``sigmoid`` over everything) rounds differently
from the solo kernels, so every operation here is written to take *the same arithmetic path, element for
element,* as the kernel the solo run reaches. What those paths are was measured on the CPU this project
runs on (x86-64, torch 2.13 CPU build with MKL; AVX2 and AVX-512 machines), by comparing each
candidate formula bit for bit with the solo kernel over thousands of random inputs with a wide range of
magnitudes:

* **Tiny matmuls** (``nn.Linear``'s ``addmm`` forward, its ``mm`` backward, the backprop script's
  ``matmul``) go to MKL ``sgemm``, whose order of additions, and whether it fuses a product into an
  add (FMA), depend on the CPU (AVX2 and AVX-512 kernels, Intel and AMD code paths), the shapes and
  even an element's position (AVX2 MKL peels the rows of a 4x10 input that are not 16-byte aligned).
  No table can cover every CPU, so ``models.blas_orders`` asks this CPU's kernels at start-up, through
  the very calls the solo run makes, and ``models.tree_products`` replays each element's tree over the
  job dimension: a rounded product is one ``mul``, a plain node one ``add``, a fused one ``addcmul``.
* **Sigmoid** (``torch.sigmoid``) runs ``1 / (1 + exp(-x))`` with SLEEF's vector ``exp`` in the vectorised
  loop but with glibc's scalar ``expf`` in the loop's tail, and the two disagree in the last bit for
  about 4% of inputs. ATen's ``vectorized_loop`` handles ``2 * Vectorized<float>::size()`` elements per
  iteration (16 with AVX2, 32 with AVX-512) and leaves the rest to the scalar path: of a solo 4x10
  activation the first 32 elements are vector, the last 8 scalar; a 4x2 or 4x1 one is all scalar. Here
  (jobs last, see below) the solo vector elements of all jobs form a prefix of the flat buffer whose
  length is a multiple of that chunk, run through the vectorised loop in one single-threaded call, and
  the scalar ones go through a stride-2 copy, which ATen can only run through its scalar ``basic_loop``.
* **BCELoss** is a scalar-only kernel (``std::log``/``std::log1p``) whatever the layout, so it is called
  as is with ``reduction='none'``; its mean is a sequential sum of the 4 losses divided by 4. Its
  backward is ``(p - y) / max((1 - p) * p, 1e-12) / 4``; ``sigmoid_backward`` is ``g * (1 - y) * y``;
  the bias gradient (``sum_to_size``) and all sums over the 4 samples are sequential ``((s0+s1)+s2)+s3``.
* **SGD** (``param.add_(grad, alpha=-lr)``) is compiled to one fused multiply-add in both the vector and
  the scalar path: ``fma(grad, float(-lr), param)``. ``torch.addcmul(param, grad, alpha)`` (value 1) is
  the same single-rounding FMA, with a per-job ``alpha``.
* The backprop script's ``torch.exp``/``torch.log`` go to MKL VML, whose result per element does not
  depend on the length or layout of the tensor, so they are used as the script uses them.

Layout and speed: the job dimension is the last one everywhere (activations (4, units, J), weights
(in, out, J), all parameters in one (rows, J) buffer), so every op runs over contiguous rows of jobs and
the optimiser step is a single ``addcmul_``. The ``nn``/``wide_deep`` step is recorded once as a list
of ops on persistent buffers with all views precomputed, then replayed: eager slicing would otherwise
cost more than the arithmetic for packs of up to a few hundred jobs.

Everything here is elementwise per job, so a member that diverges (inf, NaN) never touches the others.
All of this is specific to the machine's kernels: ``packing_is_exact`` re-checks it at start-up against
``models.train`` and a caller should fall back to solo runs when it says ``False``. Exactness is a CPU
property; on CUDA ``train_packed`` runs the plain batched engine of ``models.packed_batched``.
"""

from __future__ import annotations

import contextlib
import struct
import time
from collections.abc import Callable, Sequence
from typing import Literal

import torch
import torch.nn.functional as F

from xorjobs.defaults import DEFAULT_LOG_EVERY, DEFAULT_STEPS, VARIANTS
from xorjobs.models.backprop import sigmoid
from xorjobs.models.blas_orders import measure
from xorjobs.models.data import xor_data
from xorjobs.models.initial_weights import backprop_init, sequential_init
from xorjobs.models.networks import LAYER_WIDTHS
from xorjobs.models.packed_batched import BatchedPack, GraphedPack, batched_engine
from xorjobs.models.result import TrainResult
from xorjobs.models.threads import one_thread
from xorjobs.models.train import describe_device
from xorjobs.models.tree_products import emit_planned, emit_product, plan_product

CostChunk = list[tuple[int, float]]
PackedProgressCallback = Callable[[list[CostChunk]], None]
Tensor = torch.Tensor

# ``binary_cross_entropy_backward``'s EPSILON (a double in ATen, cast to the float scalar type).
_BCE_EPSILON = 1e-12

__all__ = ["PackedMemberError", "packing_is_exact", "train_packed"]


class PackedMemberError(RuntimeError):
    """Some members failed the way their solo run would have raised; the others finished normally.

    A solo ``nn``/``wide_deep`` run raises from ``BCELoss`` ("all elements of input should be between 0
    and 1") at the first step whose hypothesis holds a NaN. A packed member in that state keeps being
    computed (harmlessly, its numbers stay its own) and is reported here at the end: ``errors`` maps its
    index to the exception its solo run raises; ``results`` holds the other members' results (``None``
    for a failed one). Its costs up to the failure are in ``partial_costs``.
    """

    def __init__(
        self,
        errors: dict[int, RuntimeError],
        results: list[TrainResult | None],
        partial_costs: dict[int, CostChunk],
    ) -> None:
        first = min(errors)
        super().__init__(f"{len(errors)} packed member(s) failed, first #{first}: {errors[first]}")
        self.errors = errors
        self.results = results
        self.partial_costs = partial_costs


# --------------------------------------------------------------------------------------------------
# Kernel-path helpers
# --------------------------------------------------------------------------------------------------


def _vector_chunk() -> int:
    """Elements per iteration of ATen's ``vectorized_loop``: two ``Vectorized<float>`` registers.

    ``Vectorized<float>`` holds 16 floats when ATen dispatches AVX-512 kernels and 8 otherwise (AVX2;
    the DEFAULT build's "vector" ``exp`` is the scalar one, so its split does not matter).
    """
    return 32 if torch.backends.cpu.get_cpu_capability().startswith("AVX512") else 16


def _now(fn: Callable[..., object], *args: object, **kwargs: object) -> None:
    """Run an op right away (the counterpart of recording it in a ``_Program``)."""
    fn(*args, **kwargs)


class _Program:
    """A fixed sequence of tensor ops on persistent buffers, recorded once and replayed every step.

    Every view an op needs is made while recording, so a step is just the ops themselves: for small
    packs the Python and view-making overhead of ~150 slicing calls per step would otherwise dominate.
    """

    def __init__(self) -> None:
        self._ops: list[tuple[Callable[..., object], tuple[object, ...], dict[str, object]]] = []

    def __call__(self, fn: Callable[..., object], *args: object, **kwargs: object) -> None:
        self._ops.append((fn, args, kwargs))

    def run(self) -> None:
        for fn, args, kwargs in self._ops:
            fn(*args, **kwargs)


_Emit = Callable[..., None]


def _sum4(t: Tensor, out: Tensor, emit: _Emit = _now) -> Tensor:
    """Sum over the leading sample dimension of size 4 as ``((s0 + s1) + s2) + s3``, into ``out``.

    The order measured for every 4-term reduction the solo runs do: the ``mm`` giving weight gradients
    (sum over the batch), the bias gradient (``sum_to_size`` over the batch), ``BCELoss``'s and the
    backprop script's ``mean`` and ``mean(d_b, 0)``.
    """
    emit(torch.add, t[0], t[1], out=out)
    emit(Tensor.add_, out, t[2])
    emit(Tensor.add_, out, t[3])
    return out


class _Scratch:
    """Work buffers reused from step to step, one per (name, shape).

    Fresh megabyte-sized tensors every step cost more in page faults (glibc hands large blocks back to
    the OS and takes them again) than the arithmetic in them.
    """

    def __init__(self) -> None:
        self._buffers: dict[tuple[str, tuple[int, ...]], Tensor] = {}

    def __call__(self, name: str, *shape: int) -> Tensor:
        key = (name, shape)
        if key not in self._buffers:
            self._buffers[key] = torch.empty(shape)
        return self._buffers[key]


# --------------------------------------------------------------------------------------------------
# The two engines. Layout: the job dimension J is the last one everywhere (activations (4, units, J),
# weights (in, out, J)), so every elementwise op runs over long contiguous rows of jobs, vectorised
# across jobs. All parameters live in one (rows, J) buffer and all gradients in one of the same shape,
# so the optimiser step is a single op.
# --------------------------------------------------------------------------------------------------


class _SequentialPack:
    """``nn`` / ``wide_deep``: Linear + Sigmoid layers, BCELoss and SGD for J jobs at once."""

    def __init__(self, variant: str, seeds: Sequence[int], lrs: Sequence[float]) -> None:
        self.widths = LAYER_WIDTHS[variant]
        self.jobs = jobs = len(seeds)
        self.shapes = shapes = list(zip(self.widths, self.widths[1:], strict=False))
        # How this CPU's sgemm evaluates each of the solo run's products (measured once per process).
        self.forward_trees = [measure("linear_forward", 4, k, n, True) for k, n in shapes]
        self.grad_weight_trees = [measure("linear_grad_weight", n, 4, k, False) for k, n in shapes]
        self.grad_input_trees = [measure("linear_grad_input", 4, n, k, False) for k, n in shapes]
        rows = sum(k * n + n for k, n in shapes)
        self.theta = torch.empty(rows, jobs)
        self.grad = torch.empty(rows, jobs)
        self.w: list[Tensor] = []  # (in, out, J) views of theta
        self.b: list[Tensor] = []  # (out, J)
        self.gw: list[Tensor] = []  # the same views of grad
        self.gb: list[Tensor] = []
        row = 0
        for k, n in shapes:
            self.w.append(self.theta[row : row + k * n].view(k, n, jobs))
            self.gw.append(self.grad[row : row + k * n].view(k, n, jobs))
            row += k * n
            self.b.append(self.theta[row : row + n])
            self.gb.append(self.grad[row : row + n])
            row += n
        for job, seed in enumerate(seeds):
            for layer, (weight, bias) in enumerate(sequential_init(shapes, seed)):
                self.w[layer][:, :, job] = weight.t()
                self.b[layer][:, job] = bias
        # SGD's alpha: the double -lr cast to float by the add kernel.
        self.alpha = torch.tensor([-float(lr) for lr in lrs], dtype=torch.float32)
        x, y = xor_data(torch.device("cpu"))
        self.x = x[:, :, None].expand(4, 2, jobs)
        self.y = y[:, :, None]  # (4, 1, 1)
        self.chunk = _vector_chunk()
        self.scratch = _Scratch()
        self.h = [torch.empty(4, n, jobs) for _, n in shapes]  # activations, read by the backward pass
        self.one = torch.ones(())
        self.acts = [self.x, *self.h]
        self._forward, self._step = _Program(), _Program()
        self._record_forward(self._forward)
        self._record_step(self._step)

    def _record_sigmoid(self, emit: _Emit, z: Tensor, h: Tensor) -> None:
        """Sigmoid of a (4, n, J) pre-activation into ``h``, each element on its solo path.

        Solo element (i, u) has flat index i*n + u; here its J copies sit at flat [(i*n + u)*J, +J), so
        the solo tensor's vectorised prefix is a prefix here too, and its scalar tail a suffix.
        """
        n, jobs = z.shape[1], z.shape[2]
        vector_end = (4 * n) // self.chunk * self.chunk * jobs  # a multiple of the chunk: no tail
        flat, out = z.view(-1), h.view(-1)
        if vector_end:
            emit(torch.sigmoid, flat[:vector_end], out=out[:vector_end])
        if vector_end < flat.numel():
            # The scalar lambda 1 / (1 + std::exp(-a)) (glibc expf): a stride-2 input is neither
            # contiguous nor a broadcast scalar, so cpu_kernel_vec runs its basic_loop for every element.
            spread = self.scratch("spread", flat.numel() - vector_end, 2)
            emit(Tensor.copy_, spread[:, 0], flat[vector_end:])
            emit(torch.sigmoid, spread[:, 0], out=out[vector_end:])

    def _record_forward(self, emit: _Emit) -> None:
        """``model(x)`` for every job: activations into ``self.h``."""
        for layer, (a, w, b, h) in enumerate(zip(self.acts[:-1], self.w, self.b, self.h, strict=True)):
            # addmm(bias, input, weight.t()), each element along sgemm's tree, the bias included.
            z = self.scratch("z", *h.shape)
            emit_product(emit, self.scratch, f"f{layer}:", self.forward_trees[layer], a, w, z, bias=b)
            self._record_sigmoid(emit, z, h)

    def forward(self) -> list[Tensor]:
        """Activations (4, units, J) of every layer, input first: what ``model(x)`` gives each job."""
        self._forward.run()
        return self.acts

    def hypothesis(self, acts: list[Tensor]) -> Tensor:
        return acts[-1][:, 0, :]

    def costs(self, acts: list[Tensor], alive: Tensor) -> Tensor:
        """``BCELoss()(hypothesis, y)`` per job; members with a NaN (``alive`` False) get a dummy input,
        since their solo run raises here instead."""
        h = torch.where(alive, acts[-1][:, 0, :], 0.5)
        loss = F.binary_cross_entropy(h, self.y[:, 0, :].expand_as(h), reduction="none")
        return _sum4(loss, out=torch.empty(self.jobs)) / 4

    def _record_step(self, emit: _Emit) -> None:
        """``cost.backward(); optimizer.step()`` for every job."""
        scratch, jobs, one = self.scratch, self.jobs, self.one
        h = self.h[-1]
        # binary_cross_entropy_backward with grad_output 1 and reduction mean:
        # grad * (p - y) / max((1 - p) * p, EPSILON), then / numel.
        grad = scratch("bce", 4, 1, jobs)
        emit(torch.sub, h, self.y, out=grad)
        denominator = scratch("bce_d", 4, 1, jobs)
        emit(torch.sub, one, h, out=denominator)
        emit(Tensor.mul_, denominator, h)
        emit(Tensor.clamp_min_, denominator, _BCE_EPSILON)
        emit(Tensor.div_, grad, denominator)
        emit(Tensor.div_, grad, 4)
        for layer in reversed(range(len(self.w))):
            (k, n), a, h, w = self.shapes[layer], self.acts[layer], self.h[layer], self.w[layer]
            # sigmoid_backward: grad * (1 - h) * h ("1 - h" as one op into a buffer rounds alike).
            gz = scratch("gz", 4, n, jobs)
            emit(torch.sub, one, h, out=gz)
            emit(Tensor.mul_, gz, grad)
            emit(Tensor.mul_, gz, h)
            _sum4(gz, self.gb[layer], emit)
            # W.grad = grad.t().mm(input): (out, in), stored here as (in, out, J).
            trees = self.grad_weight_trees[layer]
            gw = self.gw[layer].permute(1, 0, 2)
            emit_product(emit, scratch, f"gw{layer}:", trees, gz.permute(1, 0, 2), a, gw)
            if layer == 0:
                continue
            # input.grad = grad.mm(W): (4, in).
            grad = scratch("grad_in", 4, k, jobs)
            trees = self.grad_input_trees[layer]
            emit_product(emit, scratch, f"gi{layer}:", trees, gz, w.permute(1, 0, 2), grad)
        emit(Tensor.addcmul_, self.theta, self.grad, self.alpha)  # fma(grad, -lr, param), as add_ does

    def step(self, acts: list[Tensor]) -> None:
        """``cost.backward(); optimizer.step()`` for every job (``acts``: this step's ``forward()``)."""
        self._step.run()


class _BackpropPack:
    """The backprop script for J jobs: its own elementwise expressions on (4, units, J) tensors, with
    the ``matmul``s and ``mean``s written out in MKL's / ATen's order."""

    def __init__(self, seeds: Sequence[int], lrs: Sequence[float]) -> None:
        self.jobs = jobs = len(seeds)
        self.theta = torch.empty(9, jobs)
        self.grad = torch.empty(9, jobs)
        self.w1, self.b1 = self.theta[0:4].view(2, 2, jobs), self.theta[4:6]  # (in, out, J), (out, J)
        self.w2, self.b2 = self.theta[6:8], self.theta[8:9]  # (in, J), (1, J)
        self.gw1, self.gb1 = self.grad[0:4].view(2, 2, jobs), self.grad[4:6]
        self.gw2, self.gb2 = self.grad[6:8], self.grad[8:9]
        for job, seed in enumerate(seeds):
            w1, b1, w2, b2 = backprop_init(seed)
            self.w1[:, :, job] = w1
            self.b1[:, job] = b1
            self.w2[:, job] = w2[:, 0]
            self.b2[:, job] = b2
        # ``learning_rate * d`` multiplies by the Python float cast to the tensor's float type.
        self.lr = torch.tensor([float(lr) for lr in lrs], dtype=torch.float32)
        x, y = xor_data(torch.device("cpu"))
        self.x = x[:, :, None]  # (4, 2, 1), broadcast over jobs
        self.y = y[:, :, None]  # (4, 1, 1)
        self.scratch = _Scratch()
        # Grouped once: this engine runs its products eagerly, every step.
        self.plans = {
            "l1": plan_product(measure("matmul", 4, 2, 2, False)),
            "l2": plan_product(measure("matmul", 4, 2, 1, False)),
            "gw2": plan_product(measure("matmul_transposed_left", 2, 4, 1, False)),
            "gw1": plan_product(measure("matmul_transposed_left", 2, 4, 2, False)),
        }

    def forward(self) -> list[Tensor]:
        """``(l1, a1, l2, y_pred)`` as ``models.backprop.forward`` computes them, per job."""
        jobs, scratch = self.jobs, self.scratch
        # torch.add(torch.matmul(x, w1), b1): the matmul along sgemm's tree, then the bias.
        l1 = torch.empty(4, 2, jobs)
        emit_planned(_now, scratch, "l1:", self.plans["l1"], self.x.expand(4, 2, jobs), self.w1, l1)
        l1.add_(self.b1)
        a1 = sigmoid(l1)  # 1 / (1 + torch.exp(-x)): VML exp, the same per element in any layout
        l2 = torch.empty(4, 1, jobs)
        emit_planned(_now, scratch, "l2:", self.plans["l2"], a1, self.w2.unsqueeze(1), l2)
        l2.add_(self.b2)
        return [l1, a1, l2, sigmoid(l2)]

    def hypothesis(self, acts: list[Tensor]) -> Tensor:
        return acts[3][:, 0, :]

    def costs(self, acts: list[Tensor], alive: Tensor) -> Tensor:
        """``bce_cost``: ``-mean(y * log(p) + (1 - y) * log(1 - p))``, the mean a sequential sum / 4."""
        y, y_pred = self.y, acts[3]
        terms = y * torch.log(y_pred) + (1 - y) * torch.log(1 - y_pred)
        return -(_sum4(terms[:, 0, :], out=torch.empty(self.jobs)) / 4)

    def step(self, acts: list[Tensor]) -> None:
        """``gradients`` and the script's update, per job."""
        _, a1, _, y_pred = acts
        y, x = self.y, self.x
        d_y_pred = (y_pred - y) / (y_pred * (1.0 - y_pred) + 1e-7)
        # sigmoid_prime(l) = sigmoid(l) * (1 - sigmoid(l)): sigmoid(l) is recomputed bit-identically, so
        # the stored activations stand in for it.
        d_l2 = d_y_pred * (y_pred * (1 - y_pred))  # (4, 1, J)
        scratch = self.scratch
        # matmul(a1.T, d_b2) and matmul(x.T, d_b1), along sgemm's trees.
        gw2 = self.gw2.unsqueeze(1)
        emit_planned(_now, scratch, "gw2:", self.plans["gw2"], a1.permute(1, 0, 2), d_l2, gw2)
        # matmul(d_b2, w2.T): one product per element.
        d_a1 = d_l2 * self.w2
        d_l1 = d_a1 * (a1 * (1 - a1))  # (4, 2, J)
        x = self.x.expand(4, 2, self.jobs).permute(1, 0, 2)
        emit_planned(_now, scratch, "gw1:", self.plans["gw1"], x, d_l1, self.gw1)
        _sum4(d_l1, out=self.gb1).div_(4)  # torch.mean(d_b1, 0)
        _sum4(d_l2, out=self.gb2).div_(4)
        # w = w - learning_rate * d_w (and b with the mean), all nine rows at once.
        self.theta.sub_(self.lr * self.grad)


# --------------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------------


class _PackedCostLog:
    """``models.train``'s ``_CostLog`` for J jobs: hands new costs to ``on_progress`` at logged steps at
    most every ``interval_s``, and once more at the end.

    Logged steps keep their (J,) tensors until a flush turns them into per-job lists in one go: a
    Python append per job and logged step cost a third of a 512-job ``nn`` pack's training time. A
    member that fails stays failed, so its alive steps are a prefix of the pending ones.
    """

    def __init__(self, jobs: int, on_progress: PackedProgressCallback | None, interval_s: float) -> None:
        self.costs: list[CostChunk] = [[] for _ in range(jobs)]
        self._steps: list[int] = []
        self._values: list[Tensor] = []
        self._alive: list[Tensor] = []
        self._flushed = [0] * jobs
        self._on_progress = on_progress
        self._interval_s = interval_s
        self._last_flush = time.monotonic()

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
        for job, (row, alive) in enumerate(zip(values, alive_steps, strict=True)):
            self.costs[job].extend(zip(steps[:alive], row[:alive], strict=True))
        self._steps, self._values, self._alive = [], [], []

    def flush(self) -> None:
        self._collect()
        if self._on_progress is not None:
            self._on_progress([c[f:] for c, f in zip(self.costs, self._flushed, strict=True)])
            self._flushed = [len(c) for c in self.costs]
            self._last_flush = time.monotonic()


def train_packed(
    variant: str,
    seeds: Sequence[int],
    lrs: Sequence[float],
    steps: int = DEFAULT_STEPS,
    log_every: int = DEFAULT_LOG_EVERY,
    device: str = "cpu",
    on_progress: Callable[[list[list[tuple[int, float]]]], None] | None = None,
    progress_interval_s: float = 2.0,
    *,
    engine: Literal["exact", "batched"] | None = None,
) -> list[TrainResult]:
    """Train ``len(seeds)`` jobs of ``variant`` at once; job ``i`` has ``seeds[i]`` and ``lrs[i]``.

    On the CPU each result equals ``models.train(variant, seeds[i], lrs[i], steps, log_every)`` bit for
    bit (on the kernels ``packing_is_exact`` confirms). On CUDA the jobs run as plain batched maths in
    CUDA graphs (``models.packed_batched``): the same training, rounded as the GPU rounds. ``engine``
    picks one explicitly ("batched" on the CPU runs the GPU's maths there, for tests). ``on_progress``
    gets, per job, the costs logged since its last call; it may raise to abort. A member whose solo run
    would raise (NaN hypothesis in an ``nn``/``wide_deep`` run) is reported by ``PackedMemberError``
    after the others finish.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; expected one of {', '.join(VARIANTS)}")
    if len(seeds) != len(lrs):
        raise ValueError(f"{len(seeds)} seeds but {len(lrs)} learning rates")
    torch_device = torch.device(device)
    engine = engine or ("exact" if torch_device.type == "cpu" else "batched")
    if engine == "exact" and torch_device.type != "cpu":
        raise ValueError("the bit-exact packed engine runs on the CPU only; use engine='batched'")
    if log_every < 1:
        raise ValueError("log_every must be at least 1")
    if not seeds:
        return []
    jobs = len(seeds)
    log = _PackedCostLog(jobs, on_progress, progress_interval_s)
    failed = torch.zeros(jobs, dtype=torch.bool, device=torch_device)
    with one_thread() if engine == "exact" else contextlib.nullcontext(), torch.no_grad():
        pack: _SequentialPack | _BackpropPack | BatchedPack | GraphedPack
        if engine == "batched":
            pack = batched_engine(variant, seeds, lrs, torch_device)
        elif variant == "backprop":
            pack = _BackpropPack(seeds, lrs)
        else:
            pack = _SequentialPack(variant, seeds, lrs)
        can_fail = variant != "backprop"  # only BCELoss checks its input; the script's cost just goes NaN
        for step in range(steps):
            acts = pack.forward()
            logged = step % log_every == 0
            if can_fail and (logged or step == steps - 1):
                # A NaN hypothesis makes the last bias NaN for good, so every later step's hypothesis is
                # NaN too: checking at logged steps (and the last one) finds each failure before any
                # cost its solo run would not have logged.
                failed |= torch.isnan(pack.hypothesis(acts)).any(0)
            if logged:
                alive = ~failed
                log.log(step, pack.costs(acts, alive), alive)
            pack.step(acts)
        final = pack.hypothesis(pack.forward()).cpu()  # (4, J)
        failed = failed.cpu()
    y = xor_data(torch.device("cpu"))[1][:, 0:1]
    predicted = (final > 0.5).float()
    # The mean of four 0/1 values: exact in any order.
    accuracy = _sum4((predicted == y).float(), out=torch.empty(jobs)) / 4
    log.flush()
    device_name, cpu_capability = describe_device(torch_device)
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


def _bits(value: float) -> bytes:
    return struct.pack("<d", value)


def same_result(a: TrainResult, b: TrainResult) -> bool:
    """Bit-for-bit equality of two results' numbers (NaNs compared by their bits too)."""
    if len(a.costs) != len(b.costs) or len(a.hypothesis) != len(b.hypothesis):
        return False
    for (sa, ca), (sb, cb) in zip(a.costs, b.costs, strict=True):
        if sa != sb or _bits(ca) != _bits(cb):
            return False
    return (
        all(_bits(p) == _bits(q) for p, q in zip(a.hypothesis, b.hypothesis, strict=True))
        and a.predicted == b.predicted
        and _bits(a.accuracy) == _bits(b.accuracy)
    )


# Mixed seeds and learning rates, including a run that saturates/diverges (lr 1000): enough to exercise
# the vector and scalar sigmoid paths, both MKL orders and the fused SGD update within a few hundred
# steps. Logging every step compares every cost.
_SELF_CHECK_JOBS: tuple[tuple[int, float], ...] = (
    (0, 0.1),
    (777, 1.0),
    (12345, 5.0),
    (3, 1000.0),
    (2**40, 0.01),
)


def packing_is_exact(variant: str, device: str = "cpu", steps: int = 300) -> bool:
    """Start-up self check: do packed runs equal solo ``models.train`` runs bit for bit on this machine?

    Packs a few jobs (mixed seeds/lrs, one diverging) for ``steps`` steps, logging every step, and
    compares every cost, the final hypothesis, the labels and the accuracy with solo runs. ``False`` on
    any difference (or on a device other than the CPU, where packing is not offered).
    """
    if torch.device(device).type != "cpu":
        return False
    seeds = [seed for seed, _ in _SELF_CHECK_JOBS]
    lrs = [lr for _, lr in _SELF_CHECK_JOBS]
    try:
        packed = train_packed(variant, seeds, lrs, steps=steps, log_every=1)
    except PackedMemberError:
        return False
    from xorjobs.models.train import train

    for result, seed, lr in zip(packed, seeds, lrs, strict=True):
        if not same_result(result, train(variant, seed, lr, steps=steps, log_every=1)):
            return False
    return True
