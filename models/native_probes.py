"""The native engine's per-primitive probes: each path the tape takes, against the solo kernel it stands for.

A whole-run comparison alone is too weak: a fused/unfused SGD mix-up can pass a few hundred steps of a
few jobs and still differ later, or on another job. So before the first native pack of a variant each
primitive is compared, bit for bit, with the very torch call a solo run makes, over many random and
edge inputs (~0.1-0.5 s in all): both sigmoid paths, the vector/scalar split of each activation, SGD
over sizes 1..261, BCELoss forward and backward, sigmoid backward, the 4-term sums, and every sgemm
site's tree replay. ``failed_probes`` names those that differ (none: the primitives hold here).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from xorjobs.models.blas_orders import SITES, measure
from xorjobs.models.native_kernel import Kernel, KernelChoices
from xorjobs.models.native_tape import XOR_Y, Tape, sigmoid_is_vector
from xorjobs.models.networks import LAYER_WIDTHS
from xorjobs.models.threads import one_thread

Tensor = torch.Tensor
_SEED = 20261201


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal bits, or both NaN (a NaN hypothesis fails its member whatever its payload)."""
    a32, b32 = np.ascontiguousarray(a, np.float32), np.ascontiguousarray(b, np.float32)
    nan = np.isnan(a32) & np.isnan(b32)
    return bool(np.all((a32.view(np.uint32) == b32.view(np.uint32)) | nan))


def _random(generator: np.random.Generator, count: int, low: int = -8, high: int = 8) -> np.ndarray:
    """Random floats of magnitudes 2^low..2^high, both signs."""
    values = generator.standard_normal(count) * np.exp2(generator.integers(low, high + 1, count))
    return values.astype(np.float32)


_EDGES = np.array(
    [
        *(0.0, -0.0, 1e-45, -1e-45, 1e-38, -1e-38, 0.5, -0.5, 1.0, -1.0, 16.0, -16.0, 87.0, -87.0),
        *(87.9, -87.9, 88.0, -88.0, 88.7, -88.7, 89.0, -89.0, 103.9, -103.9, 104.0, -104.0, 200.0),
        *(-200.0, 3e38, -3e38, np.inf, -np.inf, np.nan),
    ],
    dtype=np.float32,
)


class _Probe:
    """A tape over named input slots, run for many lanes (one job per lane, blocks of lanes)."""

    def __init__(self, kernel: Kernel, choices: KernelChoices) -> None:
        self.kernel, self.tape = kernel, Tape(choices)

    def run(self, inputs: dict[int, np.ndarray], outputs: list[int]) -> list[np.ndarray]:
        """Set each input slot to its values (one per lane), run the tape, read the output slots."""
        block = self.kernel.block
        lanes = max(len(v) for v in inputs.values())
        blocks = -(-lanes // block)
        ops, init = self.tape.as_arrays(block)
        slots = np.repeat(init[None], blocks, axis=0)
        for slot, values in inputs.items():
            padded = np.zeros(blocks * block, dtype=np.float32)
            padded[: len(values)] = values
            slots[:, slot, :] = padded.reshape(blocks, block)
        self.kernel.eval(self.tape.choices, ops, slots)
        return [slots[:, slot, :].reshape(-1)[:lanes] for slot in outputs]


def _sigmoid_paths(kernel: Kernel, choices: KernelChoices, generator: np.random.Generator) -> list[str]:
    """Both sigmoid paths on ~1e6 random and edge inputs: the scalar one against torch's basic_loop
    (a stride-2 input), the vector one against its vectorised loop (contiguous, one thread)."""
    x = np.concatenate([_EDGES, _random(generator, 1 << 19, -12, 7), _random(generator, 1 << 19, -3, 3)])
    x = x[: len(x) // choices.vector_chunk * choices.vector_chunk]
    failures = []
    for name, vector in (("sigmoid_scalar", False), ("sigmoid_vector", True)):
        probe = _Probe(kernel, choices)
        src, dst = probe.tape.named(), probe.tape.named()
        probe.tape.sigmoid(src, dst, vector)
        (ours,) = probe.run({src: x}, [dst])
        with one_thread():
            if vector:
                solo = torch.sigmoid(torch.from_numpy(x)).numpy()
            else:
                spread = torch.zeros(len(x), 2)
                spread[:, 0] = torch.from_numpy(x)
                solo = torch.sigmoid(spread[:, 0]).numpy()
        if not _same(ours, solo):
            failures.append(name)
    return failures


def _sigmoid_split(
    kernel: Kernel, choices: KernelChoices, variant: str, jobs: int, g: np.random.Generator
) -> bool:
    """Each layer's (4, units) activation, element by element on the path the tape gives it, against
    ``torch.sigmoid`` of that solo tensor."""
    for units in LAYER_WIDTHS[variant][1:]:
        z = _random(g, 4 * units * jobs, -3, 4).reshape(jobs, 4, units)
        probe = _Probe(kernel, choices)
        src = probe.tape.named(4 * units)
        dst = probe.tape.named(4 * units)
        for index, vector in enumerate(sigmoid_is_vector(choices, units)):
            probe.tape.sigmoid(src + index, dst + index, vector)
        flat = z.reshape(jobs, -1)
        outs = probe.run({src + e: flat[:, e] for e in range(4 * units)}, [dst + e for e in range(4 * units)])
        with one_thread():
            solo = np.stack([torch.sigmoid(torch.from_numpy(z[j])).numpy().reshape(-1) for j in range(jobs)])
        if not _same(np.stack(outs, axis=1), solo):
            return False
    return True


def _sgd(kernel: Kernel, choices: KernelChoices, g: np.random.Generator) -> bool:
    """``torch.optim.SGD`` steps of parameters of every size 1..261 (vector bodies and scalar tails)."""
    params, grads, alphas, solo = [], [], [], []
    for size in range(1, 262):
        p, grad = _random(g, size), _random(g, size)
        lr = float(np.exp2(g.uniform(-7, 10)))
        parameter = torch.nn.Parameter(torch.from_numpy(p.copy()))
        parameter.grad = torch.from_numpy(grad.copy())
        torch.optim.SGD([parameter], lr=lr).step()
        params.append(p)
        grads.append(grad)
        alphas.append(np.full(size, -lr, dtype=np.float64).astype(np.float32))
        solo.append(parameter.detach().numpy().copy())
    probe = _Probe(kernel, choices)
    p_slot, g_slot, a_slot = probe.tape.named(), probe.tape.named(), probe.tape.named()
    probe.tape.sgd(p_slot, g_slot, a_slot)
    (ours,) = probe.run(
        {p_slot: np.concatenate(params), g_slot: np.concatenate(grads), a_slot: np.concatenate(alphas)},
        [p_slot],
    )
    return _same(ours, np.concatenate(solo))


def _hypotheses(g: np.random.Generator, jobs: int) -> np.ndarray:
    """(jobs, 4) values in [0, 1]: uniform, near 0 and 1, and exact 0/1."""
    h = g.uniform(0, 1, (jobs, 4)).astype(np.float32)
    tiny = np.exp2(-g.uniform(0, 40, (jobs, 4))).astype(np.float32)
    h[: jobs // 4] = tiny[: jobs // 4]
    h[jobs // 4 : jobs // 2] = (1 - tiny[jobs // 4 : jobs // 2]).astype(np.float32)
    h[0], h[1] = [0.0, 1.0, 0.0, 1.0], [1.0, 0.0, 1.0, 0.0]
    return h


def _bce(kernel: Kernel, choices: KernelChoices, g: np.random.Generator, jobs: int) -> list[str]:
    """``BCELoss()(h, y)`` and its gradient with respect to ``h``, per job, against the tape's."""
    y = torch.tensor([[0.0], [1.0], [1.0], [0.0]])
    h = _hypotheses(g, jobs)
    solo_cost, solo_grad = [], []
    for job in range(jobs):
        leaf = torch.from_numpy(h[job].copy()).reshape(4, 1).requires_grad_(True)
        with torch.enable_grad():
            cost = torch.nn.BCELoss()(leaf, y)
            (grad,) = torch.autograd.grad(cost, leaf)
        solo_cost.append(cost.item())
        solo_grad.append(grad.reshape(-1).numpy().copy())
    probe = _Probe(kernel, choices)
    tape = probe.tape
    hs = [tape.named() for _ in range(4)]
    ys = [tape.constant(v) for v in XOR_Y]
    cost_slot = tape.bce_cost(hs, ys)
    grads = tape.bce_backward(hs, ys)
    outs = probe.run({hs[i]: h[:, i] for i in range(4)}, [cost_slot, *grads])
    failures = []
    if not _same(outs[0], np.array(solo_cost, dtype=np.float32)):
        failures.append("bce_forward")
    if not _same(np.stack(outs[1:], axis=1), np.stack(solo_grad)):
        failures.append("bce_backward")
    return failures


def _sigmoid_backward(kernel: Kernel, choices: KernelChoices, g: np.random.Generator, count: int) -> bool:
    """``sigmoid``'s autograd backward, ``grad * (1 - h) * h``, against the tape's three ops."""
    z, grad_out = _random(g, count, -3, 4), _random(g, count)
    leaf = torch.from_numpy(z.copy()).requires_grad_(True)
    with torch.enable_grad():
        h = torch.sigmoid(leaf)
        (grad,) = torch.autograd.grad(h, leaf, torch.from_numpy(grad_out.copy()))
    probe = _Probe(kernel, choices)
    tape = probe.tape
    h_slot, g_slot, out = tape.named(), tape.named(), tape.named()
    tape.sigmoid_backward(g_slot, h_slot, out)
    (ours,) = probe.run({h_slot: h.detach().numpy(), g_slot: grad_out}, [out])
    return _same(ours, grad.numpy())


def _sums(kernel: Kernel, choices: KernelChoices, variant: str, g: np.random.Generator, jobs: int) -> bool:
    """The bias gradient (``sum_to_size`` over the 4 samples) of each layer's ``nn.Linear``."""
    for k, n in itertools.pairwise(LAYER_WIDTHS[variant]):
        grad_out = _random(g, jobs * 4 * n).reshape(jobs, 4, n)
        solo = []
        for job in range(jobs):
            bias = torch.zeros(n, requires_grad=True)
            with torch.enable_grad():
                out = F.linear(torch.zeros(4, k), torch.zeros(n, k), bias)
                (grad,) = torch.autograd.grad(out, bias, torch.from_numpy(grad_out[job].copy()))
            solo.append(grad.numpy().copy())
        probe = _Probe(kernel, choices)
        terms = [probe.tape.named() for _ in range(4)]
        dest = probe.tape.named()
        probe.tape.sum4(terms, dest)
        for unit in range(n):
            (ours,) = probe.run({terms[i]: grad_out[:, i, unit] for i in range(4)}, [dest])
            if not _same(ours, np.stack(solo)[:, unit]):
                return False
    return True


def _sites(variant: str) -> list[tuple[str, int, int, int, bool]]:
    sites = []
    for k, n in itertools.pairwise(LAYER_WIDTHS[variant]):
        sites += [("linear_forward", 4, k, n, True), ("linear_grad_weight", n, 4, k, False)]
        sites.append(("linear_grad_input", 4, n, k, False))
    return sites


def _tree_replay(
    kernel: Kernel, choices: KernelChoices, variant: str, g: np.random.Generator, jobs: int
) -> list[str]:
    """Every sgemm site of the variant: the tape's replay of the measured trees against the solo call,
    random operands of magnitudes 2^-8..2^8."""
    failures = []
    for name, m, k, n, has_bias in _sites(variant):
        trees = measure(name, m, k, n, has_bias)
        a, b = _random(g, jobs * m * k).reshape(jobs, m, k), _random(g, jobs * k * n).reshape(jobs, k, n)
        bias = _random(g, jobs * n).reshape(jobs, n)
        site: Callable[[Tensor, Tensor, Tensor | None], Tensor] = SITES[name]
        solo = np.stack(
            [
                site(
                    torch.from_numpy(a[j].copy()),
                    torch.from_numpy(b[j].copy()),
                    torch.from_numpy(bias[j].copy()) if has_bias else None,
                )
                .detach()
                .numpy()
                for j in range(jobs)
            ]
        )
        probe = _Probe(kernel, choices)
        tape = probe.tape
        a_slot, b_slot, bias_slot, out_slot = (
            tape.named(m * k),
            tape.named(k * n),
            tape.named(n),
            tape.named(m * n),
        )
        for i, j in itertools.product(range(m), range(n)):
            tape.product_element(
                trees[(i, j)],
                [a_slot + i * k + kk for kk in range(k)],
                [b_slot + kk * n + j for kk in range(k)],
                bias_slot + j if has_bias else None,
                out_slot + i * n + j,
            )
        inputs = {a_slot + e: a.reshape(jobs, -1)[:, e] for e in range(m * k)}
        inputs |= {b_slot + e: b.reshape(jobs, -1)[:, e] for e in range(k * n)}
        inputs |= {bias_slot + e: bias[:, e] for e in range(n)}
        outs = probe.run(inputs, [out_slot + e for e in range(m * n)])
        if not _same(np.stack(outs, axis=1), solo.reshape(jobs, -1)):
            failures.append(f"tree_replay:{name}({m}x{k}x{n})")
    return failures


def failed_probes(kernel: Kernel, choices: KernelChoices, variant: str) -> list[str]:
    """The names of the primitives whose tape path differs from the solo kernel's here ([]: none)."""
    g = np.random.default_rng(_SEED)
    failures = _sigmoid_paths(kernel, choices, g)
    if not _sigmoid_split(kernel, choices, variant, 256, g):
        failures.append("sigmoid_split")
    if not _sgd(kernel, choices, g):
        failures.append("sgd")
    failures += _bce(kernel, choices, g, 512)
    if not _sigmoid_backward(kernel, choices, g, 1 << 16):
        failures.append("sigmoid_backward")
    if not _sums(kernel, choices, variant, g, 256):
        failures.append("sum4")
    failures += _tree_replay(kernel, choices, variant, g, 128)
    return failures
