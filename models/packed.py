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


# --- MKL sgemm summation trees ---------------------------------------------------------------------
# Each function takes the rounded products stacked along dim 0 (``p[k]``: the k-th term of every
# output element) and adds them in MKL's order into ``out``. Products are never fused into the adds:
# MKL's small kernels round each product (measured: a fused candidate matched 96% of elements, the
# unfused one 100%). Addition being commutative, only the tree matters, not the operand order.

_Tree = Callable[[Tensor, Tensor, _Scratch, _Emit], None]


def _sum2(p: Tensor, out: Tensor, scratch: _Scratch, emit: _Emit) -> None:
    """K = 2 (``nn``'s layers, ``wide_deep``'s first, the backprop script's): ``p0 + p1``."""
    emit(torch.add, p[0], p[1], out=out)


def _sum10_aligned(p: Tensor, out: Tensor, scratch: _Scratch, emit: _Emit) -> None:
    """K = 10 dot product read from a 16-byte aligned row (rows 0 and 2 of a fresh 4x10 input).

    MKL loads k0..k7 into one 8-lane register, folds it in halves ((k0+k4), (k1+k5), (k2+k6), (k3+k7),
    then (k0+k4)+(k2+k6) and (k1+k5)+(k3+k7), then their sum) and adds the tail k8, then k9.
    """
    lanes = scratch("lanes", 4, *p.shape[1:])
    emit(torch.add, p[0:4], p[4:8], out=lanes)
    halves = scratch("halves", 2, *p.shape[1:])
    emit(torch.add, lanes[0:2], lanes[2:4], out=halves)
    emit(torch.add, halves[0], halves[1], out=out)
    emit(Tensor.add_, out, p[8])
    emit(Tensor.add_, out, p[9])


def _sum10_peeled(p: Tensor, out: Tensor, scratch: _Scratch, emit: _Emit) -> None:
    """K = 10 dot product read from a row at 8 mod 16 bytes (rows 1 and 3), and every row when N = 1.

    MKL first adds k0 + k1 (peeling to alignment), adds that into lane 0 of the register holding
    k2..k9, then folds the register in halves as above: lanes (k2+(k0+k1))+k6, k3+k7, k4+k8, k5+k9.
    """
    lanes = scratch("lanes", 4, *p.shape[1:])
    emit(torch.add, p[3:6], p[7:10], out=lanes[1:4])
    emit(torch.add, p[0], p[1], out=lanes[0])
    emit(Tensor.add_, lanes[0], p[2])
    emit(Tensor.add_, lanes[0], p[6])
    halves = scratch("halves", 2, *p.shape[1:])
    emit(torch.add, lanes[0:2], lanes[2:4], out=halves)
    emit(torch.add, halves[0], halves[1], out=out)


# (K, N) -> (tree for input rows 0 and 2, tree for rows 1 and 3) of ``addmm(b, x, W.t())``; the bias is
# added last (``C = acc + beta * C``), after the whole dot product.
_FORWARD_TREES: dict[tuple[int, int], tuple[_Tree, _Tree]] = {
    (2, 2): (_sum2, _sum2),
    (2, 1): (_sum2, _sum2),
    (2, 10): (_sum2, _sum2),
    (10, 10): (_sum10_aligned, _sum10_peeled),
    (10, 1): (_sum10_peeled, _sum10_peeled),
}


def _grad_input_sequential(r: Tensor, out: Tensor, scratch: _Scratch, emit: _Emit) -> None:
    """``grad.mm(W)`` for a 4x10 grad and a 10x10 W, rows 0 and 2, from ``r[u, i, k] = g[i, u] * W[u, k]``:
    MKL sums u sequentially."""
    emit(torch.add, r[0], r[1], out=out)
    for u in range(2, r.shape[0]):
        emit(Tensor.add_, out, r[u])


def _grad_input_peeled(r: Tensor, out: Tensor, scratch: _Scratch, emit: _Emit) -> None:
    """``grad.mm(W)`` as above for rows 1 and 3 (the rows at 8 mod 16 bytes).

    Sequential too, except for output columns 0 and 1 (the peeled ones), where MKL keeps two partial
    sums, ((r0+r1)+r2)+r3 and ((r4+r5)+r6)+r7, adds them, then r8, then r9.
    """
    _sum4(r[0:4], out, emit)
    peeled = scratch("peeled", *out[:, 0:2].shape)
    emit(Tensor.copy_, peeled, out[:, 0:2])
    for u in range(4, 10):
        emit(Tensor.add_, out, r[u])
    columns = r[:, :, 0:2]
    emit(Tensor.add_, peeled, _sum4(columns[4:8], scratch("tail", *peeled.shape), emit))
    emit(Tensor.add_, peeled, columns[8])
    emit(Tensor.add_, peeled, columns[9])
    emit(Tensor.copy_, out[:, 0:2], peeled)


_ALL_ROWS, _EVEN_ROWS, _ODD_ROWS = slice(None), slice(0, 4, 2), slice(1, 4, 2)

# (K, N) -> (tree for rows 0 and 2, tree for rows 1 and 3) of ``grad.mm(W)`` (N > 1; with N = 1 every
# element is one rounded product).
_GRAD_INPUT_TREES: dict[tuple[int, int], tuple[_Tree, _Tree]] = {
    (10, 10): (_grad_input_sequential, _grad_input_peeled),
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
        self.prod_size = max(4 * k * n for k, n in shapes) * jobs
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
        scratch, jobs = self.scratch, self.jobs
        for (k, n), a, w, b, h in zip(self.shapes, self.acts[:-1], self.w, self.b, self.h, strict=True):
            z = scratch("z", 4, n, jobs)
            even, odd = _FORWARD_TREES[(k, n)]
            # The rows with the same MKL order are done together (for a 10x10 layer the two row
            # parities in turn, which also keeps the product buffer within the L2 cache).
            passes = [(_ALL_ROWS, even)] if even is odd else [(_EVEN_ROWS, even), (_ODD_ROWS, odd)]
            for rows, tree in passes:
                ai = a[rows]
                # p[k, i, u, j] = x_j[i, k] * W_j[u, k]: MKL's rounded products.
                p = self._prod(k, ai.shape[0], n)
                emit(torch.mul, ai.permute(1, 0, 2).unsqueeze(2), w.unsqueeze(1), out=p)
                tree(p, z[rows], scratch, emit)
            emit(Tensor.add_, z, b)
            self._record_sigmoid(emit, z, h)

    def _prod(self, *shape: int) -> Tensor:
        """The one product buffer (forward products, then weight- and input-gradient products)."""
        return self.scratch("prod", self.prod_size)[: math.prod(shape) * self.jobs].view(*shape, self.jobs)

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
            # W.grad = grad.t().mm(input): the products x_j[i, k] * g_j[i, u], summed over i in order.
            gw = self.gw[layer]
            if k * n >= 100:  # one sample at a time: the products stay in the L2 cache
                emit(torch.mul, a[0].unsqueeze(1), gz[0].unsqueeze(0), out=gw)
                product = self._prod(k, n)
                for i in range(1, 4):
                    emit(torch.mul, a[i].unsqueeze(1), gz[i].unsqueeze(0), out=product)
                    emit(Tensor.add_, gw, product)
            else:
                q = self._prod(4, k, n)
                emit(torch.mul, a.unsqueeze(2), gz.unsqueeze(1), out=q)
                _sum4(q, gw, emit)
            if layer == 0:
                continue
            # input.grad = grad.mm(W): r[u, i, k, j] = g_j[i, u] * W_j[u, k], summed over u.
            grad = scratch("grad_in", 4, k, jobs)
            if n == 1:
                emit(torch.mul, gz, w[:, 0, :], out=grad)  # a single product per element
                continue
            for rows, tree in zip((_EVEN_ROWS, _ODD_ROWS), _GRAD_INPUT_TREES[(k, n)], strict=True):
                gi = gz[rows]
                r = self._prod(n, gi.shape[0], k)
                emit(torch.mul, gi.permute(1, 0, 2).unsqueeze(2), w.permute(1, 0, 2).unsqueeze(1), out=r)
                tree(r, grad[rows], scratch, emit)
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
    # The mean of four 0/1 values: exact in any order.
    accuracy = _sum4((predicted == y).float(), out=torch.empty(jobs)) / 4
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
    from models.train import train

    for result, seed, lr in zip(packed, seeds, lrs, strict=True):
        if not same_result(result, train(variant, seed, lr, steps=steps, log_every=1)):
            return False
    return True
