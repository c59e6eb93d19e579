"""The tape the native kernel runs: a solo ``nn``/``wide_deep`` step written as single IEEE ops on slots.

A slot holds one value of the solo run (an activation element, a weight, a partial sum) for each of
the kernel's block of jobs. Every op is one rounding of the kind it names, so the tape decides the
arithmetic path of every value, exactly as ``models.packed_exact`` decides it with torch ops: matrix
products along the sgemm trees ``models.blas_orders`` measured on this machine, each sigmoid element on
the path (vector or scalar) ATen takes for it, sums in the solo order, SGD fused or not as ATen does.
The paths come from ``KernelChoices``, so a test can build a tape with a wrong one.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from xorjobs.models.blas_orders import BIAS, Node, Tree, measure
from xorjobs.models.kernel_paths import BCE_EPSILON
from xorjobs.models.native_kernel import KernelChoices
from xorjobs.models.networks import LAYER_WIDTHS

# Op codes of xor_kernel.c.
MUL, ADD, SUB, DIV, FMA, MAXC, COPY, SIG_LIBM, SIG_CLONE, SIG_SLEEF, BCE_TERM = range(11)
MUL_ADD, SIGMOID_BACKWARD, PRODUCT_CHAIN, BCE_GRAD, SGD_FUSED, SGD_UNFUSED, SUM4 = range(11, 18)

XOR_X = ((0.0, 0.0), (0.0, 1.0), (1.0, 0.0), (1.0, 1.0))  # models.data.xor_data, as plain numbers
XOR_Y = (0.0, 1.0, 1.0, 0.0)


@dataclass
class Tape:
    """Ops on slots, with constants and a free list of temporaries."""

    choices: KernelChoices
    ops: list[tuple[int, int, int, int, int]] = field(default_factory=list)
    constants: dict[int, float] = field(default_factory=dict)
    slots: int = 0
    _free: list[int] = field(default_factory=list)
    _temps: set[int] = field(default_factory=set)
    _constant_slots: dict[float, int] = field(default_factory=dict)

    def named(self, count: int = 1) -> int:
        """``count`` consecutive slots that keep their values (returns the first)."""
        first = self.slots
        self.slots += count
        return first

    def constant(self, value: float) -> int:
        key = float(np.float32(value))
        if key not in self._constant_slots:
            slot = self.named()
            self.constants[slot] = key
            self._constant_slots[key] = slot
        return self._constant_slots[key]

    def temp(self) -> int:
        slot = self._free.pop() if self._free else self.named()
        self._temps.add(slot)
        return slot

    def release(self, *slots: int) -> None:
        for slot in slots:
            if slot in self._temps:
                self._temps.discard(slot)
                self._free.append(slot)

    def op(self, code: int, dest: int, a: int = 0, b: int = 0, c: int = 0) -> int:
        self.ops.append((code, dest, a, b, c))
        return dest

    def to_dest(self, dest: int | None, *consumed: int) -> int:
        """Where an op's result goes: ``dest``, or a consumed temporary, or a fresh one."""
        if dest is not None:
            self.release(*consumed)
            return dest
        for slot in consumed:
            if slot in self._temps:
                self.release(*(s for s in consumed if s != slot))
                return slot
        return self.temp()

    # --- primitives whose path the choices decide ------------------------------------------------

    def sum4(self, terms: list[int], dest: int) -> int:
        """A 4-term reduction in the solo order (or, for a test, another one)."""
        t0, t1, t2, t3 = terms
        if self.choices.sum_order == "pairwise":
            left = self.op(ADD, self.temp(), t0, t1)
            right = self.op(ADD, self.temp(), t2, t3)
            self.release(left, right)
            return self.op(ADD, dest, left, right)
        stride = t1 - t0
        if stride > 0 and t2 - t1 == stride and t3 - t2 == stride:
            return self.op(SUM4, dest, t0, stride)
        self.op(ADD, dest, t0, t1)
        self.op(ADD, dest, dest, t2)
        return self.op(ADD, dest, dest, t3)

    def sigmoid(self, z: int, dest: int, vector: bool) -> int:
        if vector:
            return self.op(SIG_SLEEF, dest, z)
        return self.op(SIG_CLONE if self.choices.scalar_sigmoid == "clone" else SIG_LIBM, dest, z)

    def sgd(self, param: int, grad: int, alpha: int, rows: int = 1) -> None:
        """``param.add_(grad, alpha=-lr)`` for ``rows`` consecutive parameters: ``fma(grad, -lr,
        param)``, or two roundings where unfused."""
        self.op(SGD_FUSED if self.choices.fused_sgd else SGD_UNFUSED, param, grad, alpha, rows)

    def bce_cost(self, hyp: list[int], y: list[int]) -> int:
        """``BCELoss()(h, y)`` (mean): the four losses, summed in the solo order, divided by 4."""
        cost = self.named()
        losses = [self.op(BCE_TERM, self.named(), hyp[i], y[i]) for i in range(4)]
        self.sum4(losses, cost)
        return self.op(DIV, cost, cost, self.constant(4.0))

    def bce_backward(self, hyp: list[int], y: list[int]) -> list[int]:
        """``binary_cross_entropy_backward`` (grad_output 1, mean): ``(p - y) / max((1 - p) * p,
        EPSILON) / 4`` per sample."""
        eps = self.constant(BCE_EPSILON)
        return [self.op(BCE_GRAD, self.named(), p, target, eps) for p, target in zip(hyp, y, strict=True)]

    def sigmoid_backward(self, grad: int, h: int, dest: int) -> int:
        """``grad * (1 - h) * h`` (``sigmoid_backward``; ``1 - h`` first, then the two products)."""
        return self.op(SIGMOID_BACKWARD, dest, h, grad)

    def product_element(
        self, tree: Tree, lhs: Sequence[int], rhs: Sequence[int], bias: int | None, dest: int
    ) -> int:
        """One output element of a matrix product along its measured tree: ``lhs[k] * rhs[k]`` for
        product leaf ``k`` (the slots of ``A[i, k]`` and ``B[k, j]``), ``bias`` for the bias leaf; a
        fused node is one FMA."""

        def value(node: Tree, into: int | None) -> int:
            if not isinstance(node, Node):
                if node == BIAS:
                    assert bias is not None, "a tree with a bias leaf needs a bias"
                    return bias if into is None else self.op(COPY, into, bias)
                return self.op(MUL, into if into is not None else self.temp(), lhs[node], rhs[node])
            if node.fused is not None:
                other = node.right if node.fused == node.left else node.left
                addend = value(other, None)
                return self.op(FMA, self.to_dest(into, addend), lhs[node.fused], rhs[node.fused], addend)
            # Rounded products joining a sum one after another (a left-deep chain): one op that keeps
            # the running sum in registers, still rounding every product and every sum. The bias
            # joining such a chain last (the forward's tree here) is its final addend.
            end: int | None = None
            chained: Tree = node
            if BIAS in (node.left, node.right):
                other = node.right if node.left == BIAS else node.left
                if isinstance(other, Node) and other.fused is None and _product_child(other) is not None:
                    assert bias is not None, "a tree with a bias leaf needs a bias"
                    end, chained = bias, other
            chain: list[int] = []
            below: Tree = chained
            while isinstance(below, Node) and below.fused is None:
                product = _product_child(below)
                if product is None:
                    break
                chain.append(product)
                below = below.left if product == below.right else below.right
            if chain:
                chain.reverse()
                start: int | None = None
                if isinstance(below, int) and below != BIAS:
                    chain.insert(0, below)
                else:
                    start = value(below, None)
                if start is not None and len(chain) == 1 and end is None:
                    product = chain[0]
                    return self.op(MUL_ADD, self.to_dest(into, start), lhs[product], rhs[product], start)
                dest = self.to_dest(into, *([] if start is None else [start]))
                return self.chain(dest, [(lhs[k], rhs[k]) for k in chain], start, end)
            left, right = value(node.left, None), value(node.right, None)
            return self.op(ADD, self.to_dest(into, left, right), left, right)

        return value(tree, dest)

    def chain(self, dest: int, pairs: list[tuple[int, int]], start: int | None, end: int | None) -> int:
        """``PRODUCT_CHAIN``: the op record, then the (a, b) pairs five ints to a record."""
        first, last = -1 if start is None else start, -1 if end is None else end
        self.ops.append((PRODUCT_CHAIN, dest, len(pairs), first, last))
        flat = [slot for pair in pairs for slot in pair]
        flat += [0] * (-len(flat) % 5)
        self.ops += [tuple(flat[i : i + 5]) for i in range(0, len(flat), 5)]  # type: ignore[misc]
        return dest

    def as_arrays(self, block: int) -> tuple[np.ndarray, np.ndarray]:
        """``(ops (n, 5) int32, initial slots (slots, block) float32)``."""
        init = np.zeros((self.slots, block), dtype=np.float32)
        for slot, value in self.constants.items():
            init[slot] = value
        ops = np.array(self.ops, dtype=np.int32).reshape(-1, 5)
        return np.ascontiguousarray(ops), init


def _product_child(node: Node) -> int | None:
    """A child of ``node`` that is a rounded product leaf (the right one first), if any."""
    return next((c for c in (node.right, node.left) if isinstance(c, int) and c != BIAS), None)


def sigmoid_is_vector(choices: KernelChoices, units: int) -> list[bool]:
    """For each flat element of a solo (4, units) activation, whether ATen's vectorised loop computes it
    (the chunk-aligned prefix) or its scalar tail does."""
    vector_end = (4 * units) // choices.vector_chunk * choices.vector_chunk
    return [index < vector_end for index in range(4 * units)]


@dataclass
class SequentialTape:
    """A whole ``nn``/``wide_deep`` step as one tape: forward, the cost, then backward and SGD."""

    ops: np.ndarray
    n_forward: int
    n_cost: int
    n_backward: int
    init: np.ndarray
    rows: int  # parameters per job: per layer W (out, in) row-major, then b
    param_slot: int
    alpha_slot: int
    hyp_slots: np.ndarray  # the 4 output slots
    cost_slot: int
    shapes: list[tuple[int, int]]


def sequential_tape(variant: str, choices: KernelChoices, block: int) -> SequentialTape:
    """The tape of one solo training step of ``variant`` on this machine's measured paths."""
    widths = LAYER_WIDTHS[variant]
    shapes = list(itertools.pairwise(widths))
    tape = Tape(choices)
    rows = sum(k * n + n for k, n in shapes)
    param_slot = tape.named(rows)
    grad_slot = tape.named(rows)
    alpha_slot = tape.named()
    w_rows, b_rows = [], []  # per layer: the first row of W (out, in, as nn.Linear holds it) and of b
    row = 0
    for k, n in shapes:
        w_rows.append(row)
        b_rows.append(row + k * n)
        row += k * n + n

    def w_of(layer: int) -> Callable[[int, int], int]:  # (in, out) -> its row
        k = shapes[layer][0]
        return lambda i, o: w_rows[layer] + o * k + i

    def b_of(layer: int) -> Callable[[int], int]:
        return lambda o: b_rows[layer] + o

    x_slots = [[tape.constant(value) for value in sample] for sample in XOR_X]
    y_slots = [tape.constant(value) for value in XOR_Y]

    # Forward: acts[layer][sample][unit] for the input and every layer's output.
    acts: list[list[list[int]]] = [x_slots]
    for layer, (k, n) in enumerate(shapes):
        trees = measure("linear_forward", 4, k, n, True)
        out = tape.named(4 * n)
        vector = sigmoid_is_vector(choices, n)
        inputs, w, b = acts[-1], w_of(layer), b_of(layer)
        for i, u in itertools.product(range(4), range(n)):
            z = tape.temp()
            tape.product_element(
                trees[(i, u)],
                inputs[i],
                [param_slot + w(kk, u) for kk in range(k)],
                param_slot + b(u),
                z,
            )
            tape.sigmoid(z, out + i * n + u, vector[i * n + u])
            tape.release(z)
        acts.append([[out + i * n + u for u in range(n)] for i in range(4)])
    n_forward = len(tape.ops)
    hyp = [acts[-1][i][0] for i in range(4)]

    # BCELoss: mean of the four losses, the sum in the solo order.
    cost_slot = tape.bce_cost(hyp, y_slots)
    n_cost = len(tape.ops) - n_forward

    # binary_cross_entropy_backward (grad_output 1, mean): (p - y) / max((1 - p) * p, EPSILON) / 4.
    grad = [[g] for g in tape.bce_backward(hyp, y_slots)]
    for layer in reversed(range(len(shapes))):
        k, n = shapes[layer]
        w, b = w_of(layer), b_of(layer)
        a, h = acts[layer], acts[layer + 1]
        # sigmoid_backward: grad * (1 - h) * h.
        gz = []
        for i in range(4):
            row_slots = []
            for u in range(n):
                row_slots.append(tape.sigmoid_backward(grad[i][u], h[i][u], tape.named()))
            gz.append(row_slots)
        for u in range(n):  # bias gradient: sum_to_size over the 4 samples
            tape.sum4([gz[i][u] for i in range(4)], grad_slot + b(u))
        trees = measure("linear_grad_weight", n, 4, k, False)
        for o, i_in in itertools.product(range(n), range(k)):  # W.grad = gz.t().mm(input)
            tape.product_element(
                trees[(o, i_in)],
                [gz[s][o] for s in range(4)],
                [a[s][i_in] for s in range(4)],
                None,
                grad_slot + w(i_in, o),
            )
        if layer == 0:
            continue
        trees = measure("linear_grad_input", 4, n, k, False)
        new_grad = [[tape.named() for _ in range(k)] for _ in range(4)]
        for s, i_in in itertools.product(range(4), range(k)):  # input.grad = gz.mm(W)
            tape.product_element(
                trees[(s, i_in)],
                gz[s],
                [param_slot + w(i_in, o) for o in range(n)],
                None,
                new_grad[s][i_in],
            )
        grad = new_grad
    tape.sgd(param_slot, grad_slot, alpha_slot, rows)
    n_backward = len(tape.ops) - n_forward - n_cost
    ops, init = tape.as_arrays(block)
    return SequentialTape(
        ops=ops,
        n_forward=n_forward,
        n_cost=n_cost,
        n_backward=n_backward,
        init=init,
        rows=rows,
        param_slot=param_slot,
        alpha_slot=alpha_slot,
        hyp_slots=np.array(hyp, dtype=np.int32),
        cost_slot=cost_slot,
        shapes=shapes,
    )
