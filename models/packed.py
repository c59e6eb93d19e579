"""Packed training: many jobs of one variant trained at once, each bit for bit equal to its solo run.

``train_packed`` stacks the parameters of K jobs along a job dimension and runs every step for all of them
with a few large tensor operations instead of K sets of tiny ones. The catch is exactness: a solo run
(``models.train``) is a chaotic process, so a single last-bit difference anywhere grows into a different
cost curve. Plain batched maths (``bmm``, ``sum(dim)``, one ``sigmoid`` over everything) rounds differently
from the solo kernels, so every operation here is written to take *the same arithmetic path, element for
element,* as the kernel the solo run reaches. What those paths are was measured on the CPU this project
runs on (x86-64, torch 2.13 CPU build with MKL, ATen dispatching AVX2 kernels), by comparing each
candidate formula bit for bit with the solo kernel over thousands of random inputs with a wide range of
magnitudes:

* **Tiny matmuls** (``nn.Linear``'s ``addmm`` forward, its ``mm`` backward, the backprop script's
  ``matmul``) go to MKL ``sgemm``. For these sizes MKL rounds every product and sums them *without* FMA,
  in an order that depends on the size and, for K=10, on the 16-byte alignment of the row being read
  (rows 1 and 3 of a fresh 4x10 activation sit at byte offsets 40 and 120: MKL peels two elements
  first). The orders were recovered with a probe: three non-zero terms ``1, -1, 2**-30`` show which pair
  meets first, and all such triples give the summation tree. Here each product is one elementwise
  ``mul`` (a correctly rounded product is the same in any kernel) and each tree node one ``add``.
* **Sigmoid** (``torch.sigmoid``) runs ``1 / (1 + exp(-x))`` with SLEEF's vector ``exp`` in the vectorised
  loop but with glibc's scalar ``expf`` in the loop's tail, and the two disagree in the last bit for
  about 4% of inputs. ATen's ``vectorized_loop`` handles ``2 * Vectorized<float>::size()`` elements per
  iteration (16 with AVX2, 32 with AVX-512) and leaves the rest to the scalar path: of a solo 4x10
  activation the first 32 elements are vector, the last 8 scalar; a 4x2 or 4x1 one is all scalar. Here
  the vector ones are computed over a flat buffer padded to that chunk (every element vectorised) and
  the scalar ones over a stride-2 copy, which ATen can only run through its scalar ``basic_loop``.
* **BCELoss** is a scalar-only kernel (``std::log``/``std::log1p``) whatever the layout, so it is called
  as is with ``reduction='none'``; its mean is a sequential sum of the 4 losses divided by 4. Its
  backward is ``(p - y) / max((1 - p) * p, 1e-12) / 4``; ``sigmoid_backward`` is ``g * (1 - y) * y``;
  the bias gradient (``sum_to_size``) and all sums over the 4 samples are sequential ``((s0+s1)+s2)+s3``.
* **SGD** (``param.add_(grad, alpha=-lr)``) is compiled to one fused multiply-add in both the vector and
  the scalar path: ``fma(grad, float(-lr), param)``. ``torch.addcmul(param, grad, alpha)`` (value 1) is
  the same single-rounding FMA, with a per-job ``alpha``.
* The backprop script's ``torch.exp``/``torch.log`` go to MKL VML, whose result per element does not
  depend on the length or layout of the tensor, so they are used as the script uses them.

Everything here is elementwise per job, so a member that diverges (inf, NaN) never touches the others.
All of this is specific to the machine's kernels: ``packing_is_exact`` re-checks it at start-up against
``models.train`` and a caller should fall back to solo runs when it says ``False``. Exactness is a CPU
property; ``train_packed`` runs on the CPU only.
"""

from __future__ import annotations

import contextlib
import math
import struct
import time
from collections.abc import Callable, Iterator, Sequence

import torch
import torch.nn.functional as F

from models.backprop import sigmoid
from models.data import xor_data
from models.networks import LAYER_WIDTHS
from models.result import TrainResult
from models.train import VARIANTS, describe_device

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


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """Run ATen single-threaded: a parallel ``sigmoid`` over more than 32768 elements would be split into
    per-thread ranges whose tails fall back to the scalar path at places the solo run does not."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _scalar_sigmoid(t: Tensor) -> Tensor:
    """``torch.sigmoid`` through its scalar lambda ``1 / (1 + std::exp(-a))`` (glibc ``expf``).

    A stride-2 input is neither contiguous nor a broadcast scalar, so ``cpu_kernel_vec`` runs its
    ``basic_loop`` for every element: the path a solo tensor's tail (or a whole 4x2/4x1 tensor) takes.
    """
    spread = torch.empty((*t.shape, 2), dtype=t.dtype)
    spread[..., 0] = t
    return torch.sigmoid(spread[..., 0])


def _sum4(t: Tensor, out: Tensor) -> Tensor:
    """Sum over the leading sample dimension of size 4 as ``((s0 + s1) + s2) + s3``, into ``out``.

    The order measured for every 4-term reduction the solo runs do: the ``mm`` giving weight gradients
    (sum over the batch), the bias gradient (``sum_to_size`` over the batch), ``BCELoss``'s and the
    backprop script's ``mean`` and ``mean(d_b, 0)``.
    """
    torch.add(t[0], t[1], out=out)
    out.add_(t[2])
    return out.add_(t[3])


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


# --- MKL sgemm summation trees ---------------------------------------------------------------------
# Each function takes the rounded products stacked along dim 0 (``p[k]``: the k-th term of every
# output element) and adds them in MKL's order into ``out``. Products are never fused into the adds:
# MKL's small kernels round each product (measured: a fused candidate matched 96% of elements, the
# unfused one 100%). Addition being commutative, only the tree matters, not the operand order.

_Tree = Callable[[Tensor, Tensor, _Scratch], None]


def _sum2(p: Tensor, out: Tensor, scratch: _Scratch) -> None:
    """K = 2 (``nn``'s layers, ``wide_deep``'s first, the backprop script's): ``p0 + p1``."""
    torch.add(p[0], p[1], out=out)


def _sum10_aligned(p: Tensor, out: Tensor, scratch: _Scratch) -> None:
    """K = 10 dot product read from a 16-byte aligned row (rows 0 and 2 of a fresh 4x10 input).

    MKL loads k0..k7 into one 8-lane register, folds it in halves ((k0+k4), (k1+k5), (k2+k6), (k3+k7),
    then (k0+k4)+(k2+k6) and (k1+k5)+(k3+k7), then their sum) and adds the tail k8, then k9.
    """
    lanes = torch.add(p[0:4], p[4:8], out=scratch("lanes", 4, *p.shape[1:]))
    halves = torch.add(lanes[0:2], lanes[2:4], out=scratch("halves", 2, *p.shape[1:]))
    torch.add(halves[0], halves[1], out=out)
    out.add_(p[8])
    out.add_(p[9])


def _sum10_peeled(p: Tensor, out: Tensor, scratch: _Scratch) -> None:
    """K = 10 dot product read from a row at 8 mod 16 bytes (rows 1 and 3), and every row when N = 1.

    MKL first adds k0 + k1 (peeling to alignment), adds that into lane 0 of the register holding
    k2..k9, then folds the register in halves as above: lanes (k2+(k0+k1))+k6, k3+k7, k4+k8, k5+k9.
    """
    lanes = scratch("lanes", 4, *p.shape[1:])
    torch.add(p[3:6], p[7:10], out=lanes[1:4])
    torch.add(p[0], p[1], out=lanes[0])
    lanes[0].add_(p[2])
    lanes[0].add_(p[6])
    halves = torch.add(lanes[0:2], lanes[2:4], out=scratch("halves", 2, *p.shape[1:]))
    torch.add(halves[0], halves[1], out=out)


# (K, N) -> (tree for input rows 0 and 2, tree for rows 1 and 3) of ``addmm(b, x, W.t())``; the bias is
# added last (``C = acc + beta * C``), after the whole dot product.
_FORWARD_TREES: dict[tuple[int, int], tuple[_Tree, _Tree]] = {
    (2, 2): (_sum2, _sum2),
    (2, 1): (_sum2, _sum2),
    (2, 10): (_sum2, _sum2),
    (10, 10): (_sum10_aligned, _sum10_peeled),
    (10, 1): (_sum10_peeled, _sum10_peeled),
}


def _grad_input_10x10(r: Tensor, out: Tensor, scratch: _Scratch) -> None:
    """``grad.mm(W)`` for a 4x10 grad and a 10x10 W, from ``r[u, i, k] = g[i, u] * W[u, k]``.

    MKL sums u sequentially, except for output columns 0 and 1 of rows 1 and 3 (the misaligned rows'
    peeled columns), where it keeps two partial sums, ((r0+r1)+r2)+r3 and ((r4+r5)+r6)+r7, adds them,
    then r8, then r9.
    """
    torch.add(r[0], r[1], out=out)
    out.add_(r[2])
    out.add_(r[3])
    peeled = scratch("peeled", 2, 2, r.shape[-1])
    peeled.copy_(out[1::2, 0:2])
    for u in range(4, 10):
        out.add_(r[u])
    odd = r[:, 1::2, 0:2]
    tail = _sum4(odd[4:8], out=scratch("tail", 2, 2, r.shape[-1]))
    peeled.add_(tail)
    peeled.add_(odd[8])
    peeled.add_(odd[9])
    out[1::2, 0:2] = peeled


def _grad_input_single(r: Tensor, out: Tensor, scratch: _Scratch) -> None:
    """``grad.mm(W)`` with one output unit: each element is a single rounded product."""
    out.copy_(r[0])


_GRAD_INPUT_TREES: dict[tuple[int, int], _Tree] = {
    (10, 10): _grad_input_10x10,
    (10, 1): _grad_input_single,
    (2, 1): _grad_input_single,
}


def _sequential_init(shapes: Sequence[tuple[int, int]], seed: int) -> list[tuple[Tensor, Tensor]]:
    """The weights ``build_sequential`` gives each layer right after ``torch.manual_seed(seed)``.

    ``nn.Linear.reset_parameters`` draws ``kaiming_uniform_(weight, a=sqrt(5))`` then
    ``uniform_(bias, -1/sqrt(fan_in), 1/sqrt(fan_in))``, layer after layer; the same calls on a fresh
    generator seeded alike draw the same numbers (``torch.manual_seed`` seeds the CPU generator's
    Mersenne Twister just as ``Generator.manual_seed`` does), without building modules or touching the
    global generator.
    """
    generator = torch.Generator().manual_seed(seed)
    params = []
    for fan_in, fan_out in shapes:
        weight = torch.empty(fan_out, fan_in)
        torch.nn.init.kaiming_uniform_(weight, a=math.sqrt(5), generator=generator)
        bias = torch.empty(fan_out)
        bound = 1 / math.sqrt(fan_in)
        torch.nn.init.uniform_(bias, -bound, bound, generator=generator)
        params.append((weight, bias))
    return params


def _backprop_init(seed: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``models.backprop.initial_params(seed)`` (``normal_`` fills of w1, b1, w2, b2 in that order after
    ``torch.manual_seed``), drawn from a generator of its own."""
    generator = torch.Generator().manual_seed(seed)
    shapes: tuple[tuple[int, ...], ...] = ((2, 2), (2,), (2, 1), (1,))
    w1, b1, w2, b2 = (torch.nn.init.normal_(torch.empty(shape), generator=generator) for shape in shapes)
    return w1, b1, w2, b2


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
        for k, n in shapes:
            if (k, n) not in _FORWARD_TREES:
                raise NotImplementedError(f"no measured MKL summation order for a {k}->{n} layer")
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
            for layer, (weight, bias) in enumerate(_sequential_init(shapes, seed)):
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

    def _sigmoid(self, z: Tensor, h: Tensor) -> Tensor:
        """Sigmoid of a (4, n, J) pre-activation into ``h``, each element on its solo path.

        Solo element (i, u) has flat index i*n + u; here its J copies sit at flat [(i*n + u)*J, +J), so
        the solo tensor's vectorised prefix is a prefix here too, and its scalar tail a suffix.
        """
        n, jobs = z.shape[1], z.shape[2]
        vector_end = (4 * n) // self.chunk * self.chunk * jobs  # a multiple of the chunk: no tail
        flat, out = z.view(-1), h.view(-1)
        if vector_end:
            torch.sigmoid(flat[:vector_end], out=out[:vector_end])
        if vector_end < flat.numel():
            # A stride-2 copy: see _scalar_sigmoid.
            spread = self.scratch("spread", flat.numel() - vector_end, 2)
            spread[:, 0] = flat[vector_end:]
            torch.sigmoid(spread[:, 0], out=out[vector_end:])
        return h

    def forward(self) -> list[Tensor]:
        """Activations (4, units, J) of every layer, input first: what ``model(x)`` gives each job."""
        acts = [self.x]
        scratch, jobs = self.scratch, self.jobs
        for (k, n), w, b, h in zip(self.shapes, self.w, self.b, self.h, strict=True):
            # p[k, i, u, j] = x_j[i, k] * W_j[u, k]: MKL's rounded products.
            p = torch.mul(acts[-1].permute(1, 0, 2).unsqueeze(2), w.unsqueeze(1), out=scratch("p", k, 4, n, jobs))
            z = scratch("z", 4, n, jobs)
            even, odd = _FORWARD_TREES[(k, n)]
            if even is odd:
                even(p, z, scratch)
            else:
                even(p[:, 0::2], z[0::2], scratch)
                odd(p[:, 1::2], z[1::2], scratch)
            z.add_(b)
            acts.append(self._sigmoid(z, h))
        return acts

    def hypothesis(self, acts: list[Tensor]) -> Tensor:
        return acts[-1][:, 0, :]

    def costs(self, acts: list[Tensor], alive: Tensor) -> Tensor:
        """``BCELoss()(hypothesis, y)`` per job; members with a NaN (``alive`` False) get a dummy input,
        since their solo run raises here instead."""
        h = torch.where(alive, acts[-1][:, 0, :], 0.5)
        loss = F.binary_cross_entropy(h, self.y[:, 0, :].expand_as(h), reduction="none")
        return _sum4(loss, out=torch.empty(self.jobs)) / 4

    def step(self, acts: list[Tensor]) -> None:
        """``cost.backward(); optimizer.step()`` for every job."""
        scratch, jobs = self.scratch, self.jobs
        h = acts[-1]
        # binary_cross_entropy_backward with grad_output 1 and reduction mean.
        grad = ((h - self.y) / torch.clamp_min((1 - h) * h, _BCE_EPSILON)) / 4
        for layer in reversed(range(len(self.w))):
            (k, n), a, h, w = self.shapes[layer], acts[layer], acts[layer + 1], self.w[layer]
            # sigmoid_backward: grad * (1 - h) * h. The negation and "+ 1" round once, like "1 - h".
            gz = torch.neg(h, out=scratch("gz", 4, n, jobs)).add_(1).mul_(grad).mul_(h)
            _sum4(gz, out=self.gb[layer])
            # W.grad = grad.t().mm(input): q[i, k, u, j] = x_j[i, k] * g_j[i, u], summed over i.
            q = torch.mul(a.unsqueeze(2), gz.unsqueeze(1), out=scratch("q", 4, k, n, jobs))
            _sum4(q, out=self.gw[layer])
            if layer > 0:
                # input.grad = grad.mm(W): r[u, i, k, j] = g_j[i, u] * W_j[u, k], summed over u.
                r = torch.mul(
                    gz.permute(1, 0, 2).unsqueeze(2), w.permute(1, 0, 2).unsqueeze(1), out=scratch("r", n, 4, k, jobs)
                )
                grad = scratch("grad_in", 4, k, jobs)
                _GRAD_INPUT_TREES[(k, n)](r, grad, scratch)
        self.theta.addcmul_(self.grad, self.alpha)  # fma(grad, -lr, param), as add_(grad, alpha=-lr) does


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
            w1, b1, w2, b2 = _backprop_init(seed)
            self.w1[:, :, job] = w1
            self.b1[:, job] = b1
            self.w2[:, job] = w2[:, 0]
            self.b2[:, job] = b2
        # ``learning_rate * d`` multiplies by the Python float cast to the tensor's float type.
        self.lr = torch.tensor([float(lr) for lr in lrs], dtype=torch.float32)
        x, y = xor_data(torch.device("cpu"))
        self.x = x[:, :, None]  # (4, 2, 1), broadcast over jobs
        self.y = y[:, :, None]  # (4, 1, 1)

    def forward(self) -> list[Tensor]:
        """``(l1, a1, l2, y_pred)`` as ``models.backprop.forward`` computes them, per job."""
        x = self.x
        # torch.add(torch.matmul(x, w1), b1): MKL's x0*w0 + x1*w1 (unfused), then the bias.
        l1 = (x[:, 0:1] * self.w1[0] + x[:, 1:2] * self.w1[1]) + self.b1
        a1 = sigmoid(l1)  # 1 / (1 + torch.exp(-x)): VML exp, the same per element in any layout
        l2 = (a1[:, 0:1] * self.w2[0] + a1[:, 1:2] * self.w2[1]) + self.b2
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
        # matmul(a1.T, d_b2): products summed over the 4 samples in order.
        _sum4(a1 * d_l2, out=self.gw2)
        # matmul(d_b2, w2.T): one product per element.
        d_a1 = d_l2 * self.w2
        d_l1 = d_a1 * (a1 * (1 - a1))  # (4, 2, J)
        _sum4(x.unsqueeze(2) * d_l1.unsqueeze(1), out=self.gw1)  # matmul(x.T, d_b1): (in, out, J)
        _sum4(d_l1, out=self.gb1).div_(4)  # torch.mean(d_b1, 0)
        _sum4(d_l2, out=self.gb2).div_(4)
        # w = w - learning_rate * d_w (and b with the mean), all nine rows at once.
        self.theta.sub_(self.lr * self.grad)


# --------------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------------


class _PackedCostLog:
    """``models.train``'s ``_CostLog`` for J jobs: hands new costs to ``on_progress`` at logged steps at
    most every ``interval_s``, and once more at the end."""

    def __init__(self, jobs: int, on_progress: PackedProgressCallback | None, interval_s: float) -> None:
        self.costs: list[CostChunk] = [[] for _ in range(jobs)]
        self._flushed = [0] * jobs
        self._on_progress = on_progress
        self._interval_s = interval_s
        self._last_flush = time.monotonic()

    def log(self, step: int, costs: list[float], alive: list[bool]) -> None:
        for job, (cost, ok) in enumerate(zip(costs, alive, strict=True)):
            if ok:
                self.costs[job].append((step, cost))
        if self._on_progress is not None and time.monotonic() - self._last_flush >= self._interval_s:
            self.flush()

    def flush(self) -> None:
        if self._on_progress is not None:
            self._on_progress([c[f:] for c, f in zip(self.costs, self._flushed, strict=True)])
            self._flushed = [len(c) for c in self.costs]
            self._last_flush = time.monotonic()


def train_packed(
    variant: str,
    seeds: Sequence[int],
    lrs: Sequence[float],
    steps: int = 10001,
    log_every: int = 100,
    device: str = "cpu",
    on_progress: Callable[[list[list[tuple[int, float]]]], None] | None = None,
    progress_interval_s: float = 2.0,
) -> list[TrainResult]:
    """Train ``len(seeds)`` jobs of ``variant`` at once; job ``i`` has ``seeds[i]`` and ``lrs[i]``.

    Each result equals ``models.train(variant, seeds[i], lrs[i], steps, log_every)`` bit for bit (on
    the kernels ``packing_is_exact`` confirms). ``on_progress`` gets, per job, the costs logged since its
    last call; it may raise to abort. A member whose solo run would raise (NaN hypothesis in an
    ``nn``/``wide_deep`` run) is reported by ``PackedMemberError`` after the others finish.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; expected one of {', '.join(VARIANTS)}")
    if len(seeds) != len(lrs):
        raise ValueError(f"{len(seeds)} seeds but {len(lrs)} learning rates")
    if torch.device(device).type != "cpu":
        raise ValueError("packed training is bit-exact only on the CPU; train other devices solo")
    if log_every < 1:
        raise ValueError("log_every must be at least 1")
    if not seeds:
        return []
    jobs = len(seeds)
    log = _PackedCostLog(jobs, on_progress, progress_interval_s)
    failed = torch.zeros(jobs, dtype=torch.bool)
    with _one_thread(), torch.no_grad():
        pack: _SequentialPack | _BackpropPack
        pack = _BackpropPack(seeds, lrs) if variant == "backprop" else _SequentialPack(variant, seeds, lrs)
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
                log.log(step, pack.costs(acts, alive).tolist(), alive.tolist())
            pack.step(acts)
        final = pack.hypothesis(pack.forward())  # (4, J)
    y = xor_data(torch.device("cpu"))[1][:, 0:1]
    predicted = (final > 0.5).float()
    accuracy = _sum4((predicted == y).float(), out=torch.empty(jobs)) / 4  # a mean of four 0/1 values: exact in any order
    log.flush()
    device_name, cpu_capability = describe_device(torch.device("cpu"))
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
_SELF_CHECK_JOBS: tuple[tuple[int, float], ...] = ((0, 0.1), (777, 1.0), (12345, 5.0), (3, 1000.0), (2**40, 0.01))


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
    from models.train import train

    for result, seed, lr in zip(packed, seeds, lrs, strict=True):
        if not same_result(result, train(variant, seed, lr, steps=steps, log_every=1)):
            return False
    return True


