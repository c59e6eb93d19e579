"""How this CPU's BLAS evaluates the tiny matrix products of a solo run, measured at start-up.

A solo run's ``addmm``/``mm``/``matmul`` calls go to MKL ``sgemm``, whose result for an output element
depends on the order it adds the products in and on which products it fuses into an add (FMA). Both
depend on the CPU (AVX2 and AVX-512 kernels differ, and so do Intel and AMD code paths), the shapes,
and even the position of the element in the matrix. Rather than a table per CPU, this module asks the
kernel itself, through the very call the solo run makes, with inputs chosen so the answer is readable:

* **Order.** With exact products ``1 * v`` and three non-zero terms ``1, -1, 2**-30`` (all others 0),
  the result is ``2**-30`` exactly when the first two terms meet before the third joins them (otherwise
  ``1 + 2**-30`` rounds to 1 and the tiny term is lost). Those answers for every triple give the
  summation tree: two leaves that meet first against every other leaf are siblings; merge and repeat.
* **Fusion.** For each node with a product as a direct child, two random inexact products, one on each
  side (all others 0), tell whether the kernel rounded both products and added them, or fused one of
  them into the add: ``fma(a, b, other)``.

A ``Tree`` is then replayed elementwise over a job dimension by ``models.packed``, which reproduces
the kernel's result bit for bit whatever the number of jobs.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import torch

from xorjobs.models.threads import one_thread

Tensor = torch.Tensor

BIAS = -1
"""The leaf standing for the bias term of an ``addmm`` (added as is, no product)."""


@dataclass(frozen=True)
class Node:
    """``left + right`` rounded once; when ``fused`` names a product leaf among the two children, that
    product is not rounded on its own: ``fma(a_k, b_k, other child)``."""

    left: Tree
    right: Tree
    fused: int | None = None


Tree = int | Node
"""A leaf (product index ``k``, or ``BIAS``) or a ``Node``."""

Site = Callable[[Tensor, Tensor, Tensor | None], Tensor]
"""A solo run's call: ``site(A (M, K), B (K, N), bias (N,) or None) -> C (M, N)`` with
``C[i, j] = sum_k A[i, k] * B[k, j] (+ bias[j])``, laying the operands out in memory as the solo run
does (fresh tensors, transposed views, parameters)."""

_TINY = 2.0**-30
_FUSION_TRIALS = 48


def canonical(tree: Tree) -> Tree:
    """``tree`` with each node's children ordered by their smallest leaf: trees equal up to the
    (exact) commutativity of ``+`` compare equal."""
    if not isinstance(tree, Node):
        return tree
    left, right = canonical(tree.left), canonical(tree.right)
    if min(leaves(right)) < min(leaves(left)):
        left, right = right, left
    return Node(left, right, tree.fused)


def leaves(tree: Tree) -> list[int]:
    if isinstance(tree, Node):
        return leaves(tree.left) + leaves(tree.right)
    return [tree]


Shape = tuple[int, int, int]
Terms = dict[int, tuple[float, float]]
"""Leaf -> (a, b): every output element gets the product ``a * b`` as its term ``k`` (``a`` itself for
``BIAS``); all other terms are 0. Every element sees the same terms, so one call answers for all."""


def _run(site: Site, shape: Shape, bias: bool, terms: Terms) -> list[list[float]]:
    m, k_size, n = shape
    a, b = torch.zeros(m, k_size), torch.zeros(k_size, n)
    bias_tensor = torch.zeros(n) if bias else None
    for k, (x, w) in terms.items():
        if k == BIAS:
            assert bias_tensor is not None
            bias_tensor[:] = x
        else:
            a[:, k], b[k, :] = x, w
    result: list[list[float]] = site(a, b, bias_tensor).tolist()
    return result


def _topologies(site: Site, shape: Shape, bias: bool) -> dict[tuple[int, int], Tree]:
    """The summation tree of every output element, from which pair of each leaf triple meets first."""
    m, k_size, n = shape
    leaf_ids = list(range(k_size)) + ([BIAS] if bias else [])

    def term(k: int, value: float) -> tuple[int, tuple[float, float]]:
        return k, ((value, 0.0) if k == BIAS else (1.0, value))

    first: dict[tuple[int, int, int], list[list[bool]]] = {}  # (x, y, z): x and y meet before z
    for x, y, z in itertools.permutations(leaf_ids, 3):
        if x < y:
            c = _run(site, shape, bias, dict([term(x, 1.0), term(y, -1.0), term(z, _TINY)]))
            first[(x, y, z)] = first[(y, x, z)] = [[value == _TINY for value in row] for row in c]
    trees = {}
    for i, j in itertools.product(range(m), range(n)):
        subtrees: dict[int, Tree] = {leaf: leaf for leaf in leaf_ids}
        while len(subtrees) > 1:
            for x, y in itertools.combinations(list(subtrees), 2):
                if all(first[(x, y, z)][i][j] for z in subtrees if z not in (x, y)):
                    subtrees[x] = Node(subtrees[x], subtrees.pop(y))
                    break
            else:
                raise RuntimeError(
                    f"the kernel's sum for element {(i, j)} of a {shape} product is not a tree"
                )
        trees[(i, j)] = next(iter(subtrees.values()))
    return trees


def _f32(value: float) -> float:
    return float(torch.tensor(value, dtype=torch.float64).to(torch.float32))


def _fuse(
    site: Site, shape: Shape, bias: bool, tree: Tree, elements: list[tuple[int, int]]
) -> dict[tuple[int, int], Tree]:
    """``tree`` (the topology ``elements`` share) with each node's fused product, if any, per element:
    elements with one summation order may still differ in what they fuse."""
    if not isinstance(tree, Node):
        return dict.fromkeys(elements, tree)
    left = _fuse(site, shape, bias, tree.left, elements)
    right = _fuse(site, shape, bias, tree.right, elements)
    candidates = [k for k in (tree.left, tree.right) if isinstance(k, int) and k != BIAS]
    if not candidates:
        return {element: Node(left[element], right[element]) for element in elements}
    # One leaf from each side, all others 0: the node's value reaches the output unchanged.
    x_leaf, y_leaf = leaves(tree.left)[0], leaves(tree.right)[0]
    generator = torch.Generator().manual_seed(1234)
    possible: dict[tuple[int, int], list[int | None]] = {element: [None, *candidates] for element in elements}
    for _ in range(_FUSION_TRIALS):
        raw = torch.randn(4, generator=generator, dtype=torch.float64)
        scale = 2.0 ** torch.randint(-6, 7, (4,), generator=generator)
        values = [_f32(float(v)) for v in raw * scale]
        terms = {
            leaf: (values[2 * side], 0.0 if leaf == BIAS else values[2 * side + 1])
            for side, leaf in enumerate((x_leaf, y_leaf))
        }
        # float64 holds a float32 product exactly; a sum rounded to float64 then to float32 differs
        # from one rounding only on exact ties, which random trials avoid.
        rounded = {k: x if k == BIAS else _f32(x * w) for k, (x, w) in terms.items()}
        expected = {
            fused: _f32(rounded[x_leaf] + rounded[y_leaf])
            if fused is None
            else _f32(terms[fused][0] * terms[fused][1] + rounded[y_leaf if fused == x_leaf else x_leaf])
            for fused in [None, *candidates]
        }
        c = _run(site, shape, bias, terms)
        for (i, j), options in possible.items():
            options[:] = [fused for fused in options if c[i][j] == expected[fused]]
    fused_trees: dict[tuple[int, int], Tree] = {}
    for element, options in possible.items():
        if len(options) != 1:
            raise RuntimeError(f"cannot tell how the kernel fuses element {element} of a {shape} product")
        fused_trees[element] = Node(left[element], right[element], options[0])
    return fused_trees


def measure_site(site: Site, m: int, k: int, n: int, bias: bool) -> dict[tuple[int, int], Tree]:
    """The tree of every output element ``(i, j)`` of ``site`` for an (m, k) x (k, n) product."""
    shape = (m, k, n)
    with one_thread():
        topologies = _topologies(site, shape, bias)
        groups: dict[Tree, list[tuple[int, int]]] = {}
        for element, tree in topologies.items():
            groups.setdefault(tree, []).append(element)
        trees: dict[tuple[int, int], Tree] = {}
        for tree, elements in groups.items():
            trees.update(_fuse(site, shape, bias, tree, elements))
        return {element: canonical(tree) for element, tree in trees.items()}


@cache
def measure(name: str, m: int, k: int, n: int, bias: bool) -> dict[tuple[int, int], Tree]:
    """``measure_site`` for the solo call ``SITES[name]``, once per process (milliseconds)."""
    return measure_site(SITES[name], m, k, n, bias)


# --- The solo runs' call sites ----------------------------------------------------------------------


def _linear_forward(a: Tensor, b: Tensor, bias: Tensor | None) -> Tensor:
    """``nn.Linear``'s forward: ``addmm(bias, input, weight.t())`` with a contiguous (out, in) weight."""
    weight = b.t().contiguous()
    assert bias is not None
    return torch.nn.functional.linear(a.contiguous(), weight, bias)


def _linear_grads(a_side: str) -> Site:
    def site(a: Tensor, b: Tensor, bias: Tensor | None) -> Tensor:
        del bias
        if a_side == "grad_weight":
            # weight.grad (out, in) = grad_output.t().mm(input): A = grad_output.t() (out, 4), B = input.
            grad_output, layer_input = a.t().contiguous(), b.contiguous()
            weight = torch.zeros(grad_output.shape[1], layer_input.shape[1], requires_grad=True)
            zero_bias = torch.zeros(grad_output.shape[1], requires_grad=True)
            with torch.enable_grad():  # probes may run inside a caller's no_grad block
                z = torch.nn.functional.linear(layer_input, weight, zero_bias)
                (grad,) = torch.autograd.grad(z, weight, grad_output)
            return grad
        # input.grad (4, in) = grad_output.mm(weight): A = grad_output (4, out), B = weight (out, in).
        grad_output, weight = a.contiguous(), b.contiguous()
        x = torch.zeros(grad_output.shape[0], weight.shape[1], requires_grad=True)
        weight.requires_grad_(True)
        zero_bias = torch.zeros(weight.shape[0], requires_grad=True)
        with torch.enable_grad():
            z = torch.nn.functional.linear(x, weight, zero_bias)
            (grad,) = torch.autograd.grad(z, x, grad_output)
        return grad

    return site


def _matmul(a: Tensor, b: Tensor, bias: Tensor | None) -> Tensor:
    """``torch.matmul`` of two fresh tensors (the backprop script's forward)."""
    return torch.matmul(a.contiguous(), b.contiguous())


def _matmul_transposed_left(a: Tensor, b: Tensor, bias: Tensor | None) -> Tensor:
    """``torch.matmul(t.T, other)`` with ``t`` a fresh tensor (the backprop script's weight gradients)."""
    return torch.matmul(a.t().contiguous().t(), b.contiguous())


SITES: dict[str, Site] = {
    "linear_forward": _linear_forward,
    "linear_grad_weight": _linear_grads("grad_weight"),
    "linear_grad_input": _linear_grads("grad_input"),
    "matmul": _matmul,
    "matmul_transposed_left": _matmul_transposed_left,
}
