"""The bit-exact packed engine: many jobs of one variant trained at once on the CPU, each bit for bit
equal to its solo run.

It stacks the parameters of K jobs along a job dimension and runs every step for all of them
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
All of this is specific to the machine's kernels: ``ExactPackedEngine.self_check`` re-checks it at
start-up against ``models.train`` and a caller should fall back to solo runs when it says ``False``.
Exactness is a CPU property; on CUDA the plain batched engine of ``models.packed_batched`` runs.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from xorjobs.defaults import DEFAULT_LOG_EVERY, DEFAULT_STEPS
from xorjobs.models.backprop import sigmoid
from xorjobs.models.blas_orders import measure
from xorjobs.models.data import xor_data
from xorjobs.models.engine import PackProgressCallback
from xorjobs.models.initial_weights import backprop_init, sequential_init
from xorjobs.models.kernel_paths import BCE_EPSILON, Emit, Program, Scratch, now, sum4, vector_chunk
from xorjobs.models.networks import LAYER_WIDTHS
from xorjobs.models.pack_loop import check_jobs, run_pack
from xorjobs.models.result import TrainResult
from xorjobs.models.self_check import matches_solo
from xorjobs.models.stopping import NO_STOP, StopRule
from xorjobs.models.tree_products import emit_planned, emit_product, plan_product

Tensor = torch.Tensor


# --------------------------------------------------------------------------------------------------
# The two packs, one per kind of variant. Layout: the job dimension J is the last one everywhere
# (activations (4, units, J), weights (in, out, J)), so every elementwise op runs over long contiguous
# rows of jobs, vectorised across jobs. All parameters live in one (rows, J) buffer and all gradients
# in one of the same shape, so the optimiser step is a single op.
# --------------------------------------------------------------------------------------------------


class SequentialPack:
    """``nn`` / ``wide_deep``: Linear + Sigmoid layers, BCELoss and SGD for J jobs at once."""

    def __init__(
        self,
        variant: str,
        seeds: Sequence[int],
        lrs: Sequence[float],
        *,
        state: tuple[Tensor, Tensor] | None = None,
    ) -> None:
        """``state``: ``(theta, alpha)`` of members to continue (``select``) instead of fresh ones."""
        self.variant = variant
        self.widths = LAYER_WIDTHS[variant]
        self.jobs = jobs = len(seeds) if state is None else state[0].shape[1]
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
        if state is None:
            for job, seed in enumerate(seeds):
                for layer, (weight, bias) in enumerate(sequential_init(shapes, seed)):
                    self.w[layer][:, :, job] = weight.t()
                    self.b[layer][:, job] = bias
            # SGD's alpha: the double -lr cast to float by the add kernel.
            self.alpha = torch.tensor([-float(lr) for lr in lrs], dtype=torch.float32)
        else:
            self.theta.copy_(state[0])
            self.alpha = state[1].clone()
        x, y = xor_data(torch.device("cpu"))
        self.x = x[:, :, None].expand(4, 2, jobs)
        self.y = y[:, :, None]  # (4, 1, 1)
        self.chunk = vector_chunk()
        self.scratch = Scratch()
        self.h = [torch.empty(4, n, jobs) for _, n in shapes]  # activations, read by the backward pass
        self.one = torch.ones(())
        self.acts = [self.x, *self.h]
        self._forward, self._step = Program(), Program()
        self._record_forward(self._forward)
        self._record_step(self._step)

    def _record_sigmoid(self, emit: Emit, z: Tensor, h: Tensor) -> None:
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

    def _record_forward(self, emit: Emit) -> None:
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
        return sum4(loss, out=torch.empty(self.jobs)) / 4

    def _record_step(self, emit: Emit) -> None:
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
        emit(Tensor.clamp_min_, denominator, BCE_EPSILON)
        emit(Tensor.div_, grad, denominator)
        emit(Tensor.div_, grad, 4)
        for layer in reversed(range(len(self.w))):
            (k, n), a, h, w = self.shapes[layer], self.acts[layer], self.h[layer], self.w[layer]
            # sigmoid_backward: grad * (1 - h) * h ("1 - h" as one op into a buffer rounds alike).
            gz = scratch("gz", 4, n, jobs)
            emit(torch.sub, one, h, out=gz)
            emit(Tensor.mul_, gz, grad)
            emit(Tensor.mul_, gz, h)
            sum4(gz, self.gb[layer], emit)
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

    def select(self, keep: Tensor) -> SequentialPack:
        """The members ``keep`` as a pack of their own (early stopping's compaction).

        Every op of a step is per job column: the products replay each job's own sgemm tree, the
        sums over the 4 samples run along a job's own column, SGD is elementwise, and the sigmoid's
        vector part is a prefix of ``chunk * J`` elements (a multiple of ATen's chunk for any J, so
        each element keeps its path). So a job's numbers depend on its own column only, whatever J.
        """
        return SequentialPack(
            self.variant, [], [], state=(self.theta.index_select(1, keep), self.alpha.index_select(0, keep))
        )


class BackpropPack:
    """The backprop script for J jobs: its own elementwise expressions on (4, units, J) tensors, with
    the ``matmul``s and ``mean``s written out in MKL's / ATen's order."""

    def __init__(
        self, seeds: Sequence[int], lrs: Sequence[float], *, state: tuple[Tensor, Tensor] | None = None
    ) -> None:
        """``state``: ``(theta, lr)`` of members to continue (``select``) instead of fresh ones."""
        self.jobs = jobs = len(seeds) if state is None else state[0].shape[1]
        self.theta = torch.empty(9, jobs)
        self.grad = torch.empty(9, jobs)
        self.w1, self.b1 = self.theta[0:4].view(2, 2, jobs), self.theta[4:6]  # (in, out, J), (out, J)
        self.w2, self.b2 = self.theta[6:8], self.theta[8:9]  # (in, J), (1, J)
        self.gw1, self.gb1 = self.grad[0:4].view(2, 2, jobs), self.grad[4:6]
        self.gw2, self.gb2 = self.grad[6:8], self.grad[8:9]
        if state is None:
            for job, seed in enumerate(seeds):
                w1, b1, w2, b2 = backprop_init(seed)
                self.w1[:, :, job] = w1
                self.b1[:, job] = b1
                self.w2[:, job] = w2[:, 0]
                self.b2[:, job] = b2
            # ``learning_rate * d`` multiplies by the Python float cast to the tensor's float type.
            self.lr = torch.tensor([float(lr) for lr in lrs], dtype=torch.float32)
        else:
            self.theta.copy_(state[0])
            self.lr = state[1].clone()
        x, y = xor_data(torch.device("cpu"))
        self.x = x[:, :, None]  # (4, 2, 1), broadcast over jobs
        self.y = y[:, :, None]  # (4, 1, 1)
        self.scratch = Scratch()
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
        emit_planned(now, scratch, "l1:", self.plans["l1"], self.x.expand(4, 2, jobs), self.w1, l1)
        l1.add_(self.b1)
        a1 = sigmoid(l1)  # 1 / (1 + torch.exp(-x)): VML exp, the same per element in any layout
        l2 = torch.empty(4, 1, jobs)
        emit_planned(now, scratch, "l2:", self.plans["l2"], a1, self.w2.unsqueeze(1), l2)
        l2.add_(self.b2)
        return [l1, a1, l2, sigmoid(l2)]

    def hypothesis(self, acts: list[Tensor]) -> Tensor:
        return acts[3][:, 0, :]

    def costs(self, acts: list[Tensor], alive: Tensor) -> Tensor:
        """``bce_cost``: ``-mean(y * log(p) + (1 - y) * log(1 - p))``, the mean a sequential sum / 4."""
        y, y_pred = self.y, acts[3]
        terms = y * torch.log(y_pred) + (1 - y) * torch.log(1 - y_pred)
        return -(sum4(terms[:, 0, :], out=torch.empty(self.jobs)) / 4)

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
        emit_planned(now, scratch, "gw2:", self.plans["gw2"], a1.permute(1, 0, 2), d_l2, gw2)
        # matmul(d_b2, w2.T): one product per element.
        d_a1 = d_l2 * self.w2
        d_l1 = d_a1 * (a1 * (1 - a1))  # (4, 2, J)
        x = self.x.expand(4, 2, self.jobs).permute(1, 0, 2)
        emit_planned(now, scratch, "gw1:", self.plans["gw1"], x, d_l1, self.gw1)
        sum4(d_l1, out=self.gb1).div_(4)  # torch.mean(d_b1, 0)
        sum4(d_l2, out=self.gb2).div_(4)
        # w = w - learning_rate * d_w (and b with the mean), all nine rows at once.
        self.theta.sub_(self.lr * self.grad)

    def select(self, keep: Tensor) -> BackpropPack:
        """The members ``keep`` as a pack of their own: every op here is per job column (VML's
        exp/log per element, products along each job's tree, sums down a job's column)."""
        return BackpropPack([], [], state=(self.theta.index_select(1, keep), self.lr.index_select(0, keep)))


class ExactPackedEngine:
    """The ``Engine`` that packs on the CPU with every member bit for bit equal to its solo run."""

    name = "exact"
    packs = True

    def self_check(self, variant: str, device: str, steps: int) -> bool:
        """Packed runs compared with solo ``models.train`` runs bit for bit; ``False`` off the CPU."""
        return torch.device(device).type == "cpu" and matches_solo(self, variant, steps)

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
        if torch_device.type != "cpu":
            raise ValueError("the bit-exact packed engine runs on the CPU only; use engine='batched'")

        def make_pack() -> SequentialPack | BackpropPack:
            if variant == "backprop":
                return BackpropPack(seeds, lrs)
            return SequentialPack(variant, seeds, lrs)

        # Single-threaded: how ATen splits a large sigmoid between threads would move its scalar tails.
        return run_pack(
            make_pack,
            variant,
            len(seeds),
            steps,
            log_every,
            torch_device,
            on_progress,
            progress_interval_s,
            single_threaded=True,
            stop=stop,
        )
