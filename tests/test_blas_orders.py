"""The start-up measurement of the BLAS kernels' summation trees, and their replay over many jobs.

Unit tests: no services. The first tests check ``measure_site`` on made-up kernels whose trees are known;
the last check, on this machine's real kernels, that every product the packed engine needs, replayed
over a job dimension along the measured trees, equals the kernel's own result for every job.
"""

from __future__ import annotations

import pytest
import torch

from xorjobs.models.blas_orders import BIAS, SITES, Node, Site, Tree, canonical, leaves, measure, measure_site
from xorjobs.models.tree_products import emit_product


def evaluate(tree: Tree, a: torch.Tensor, b: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """A tree's value for one output element in float32, FMA emulated in float64 (exact but for ties)."""
    if isinstance(tree, Node):
        if tree.fused is not None:
            other = tree.right if tree.fused == tree.left else tree.left
            rest = evaluate(other, a, b, bias).double()
            return (a[tree.fused].double() * b[tree.fused].double() + rest).float()
        return evaluate(tree.left, a, b, bias) + evaluate(tree.right, a, b, bias)
    if tree == BIAS:
        assert bias is not None
        return bias
    return a[tree] * b[tree]


def kernel_of(trees: dict[tuple[int, int], Tree]) -> Site:
    """A made-up kernel that computes element (i, j) along ``trees[(i, j)]``."""

    def site(a: torch.Tensor, b: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        m, n = a.shape[0], b.shape[1]
        out = torch.empty(m, n)
        for (i, j), tree in trees.items():
            out[i, j] = evaluate(tree, a[i], b[:, j], None if bias is None else bias[j])
        return out

    return site


def chain(order: list[int], fused: bool) -> Tree:
    tree: Tree = order[0]
    for leaf in order[1:]:
        tree = Node(tree, leaf, leaf if fused else None)
    return tree


FOLD = Node(Node(Node(0, 4), Node(2, 6, 6)), Node(Node(1, 5, 1), Node(3, 7)))


@pytest.mark.parametrize(
    ("even_rows", "odd_rows"),
    [
        (chain([0, 1, 2, 3], fused=False), chain([0, 1, 2, 3], fused=True)),
        (chain([3, 2, 1, 0], fused=True), Node(Node(0, 1), Node(2, 3, 3))),
    ],
)
def test_measure_recovers_known_trees_per_row(even_rows: Tree, odd_rows: Tree) -> None:
    known = {(i, j): even_rows if i % 2 == 0 else odd_rows for i in range(4) for j in range(3)}
    assert measure_site(kernel_of(known), 4, 4, 3, bias=False) == {e: canonical(t) for e, t in known.items()}


def test_measure_recovers_an_eight_lane_fold_with_a_bias_added_last() -> None:
    known: dict[tuple[int, int], Tree] = {(i, j): Node(FOLD, BIAS) for i in range(2) for j in range(2)}
    assert measure_site(kernel_of(known), 2, 8, 2, bias=True) == {e: canonical(t) for e, t in known.items()}


def test_measure_recovers_a_product_fused_into_the_bias() -> None:
    known: dict[tuple[int, int], Tree] = {(0, 0): Node(Node(BIAS, 0, 0), 1, 1)}
    assert measure_site(kernel_of(known), 1, 2, 1, bias=True) == {e: canonical(t) for e, t in known.items()}


def test_emit_product_follows_each_rectangle_of_trees() -> None:
    """Rows with different trees, and one odd column, replayed over 37 jobs."""
    trees: dict[tuple[int, int], Tree] = {}
    for i in range(4):
        for j in range(5):
            tree = chain([0, 1, 2], fused=i % 2 == 1)
            if j == 3:
                tree = Node(Node(2, 0, 2), 1)
            trees[(i, j)] = Node(tree, BIAS)
    generator = torch.Generator().manual_seed(5)
    jobs = 37
    a, b, bias = (torch.randn(*shape, jobs, generator=generator) for shape in ((4, 3), (3, 5), (5,)))
    out = torch.empty(4, 5, jobs)
    buffers: dict[tuple[str, tuple[int, ...]], torch.Tensor] = {}

    def scratch(name: str, *shape: int) -> torch.Tensor:
        return buffers.setdefault((name, shape), torch.empty(shape))

    emit_product(lambda fn, *args, **kwargs: fn(*args, **kwargs), scratch, "t:", trees, a, b, out, bias=bias)
    site = kernel_of(trees)
    for job in range(jobs):
        assert torch.equal(out[:, :, job], site(a[:, :, job], b[:, :, job], bias[:, job]))


# Every product the packed engines take from sgemm: (site, m, k, n, bias).
PRODUCTS = [
    *[("linear_forward", 4, k, n, True) for k, n in ((2, 2), (2, 1), (2, 10), (10, 10), (10, 1))],
    *[("linear_grad_weight", n, 4, k, False) for k, n in ((2, 2), (2, 1), (2, 10), (10, 10), (10, 1))],
    *[("linear_grad_input", 4, n, k, False) for k, n in ((2, 1), (10, 10), (10, 1))],
    ("matmul", 4, 2, 2, False),
    ("matmul", 4, 2, 1, False),
    ("matmul_transposed_left", 2, 4, 1, False),
    ("matmul_transposed_left", 2, 4, 2, False),
]


@pytest.mark.parametrize(("name", "m", "k", "n", "bias"), PRODUCTS)
def test_measured_trees_reproduce_this_cpus_kernel_for_every_job(
    name: str, m: int, k: int, n: int, bias: bool
) -> None:
    trees = measure(name, m, k, n, bias)
    assert set(trees) == {(i, j) for i in range(m) for j in range(n)}
    assert all(
        sorted(leaves(tree)) == sorted([*range(k), *([BIAS] if bias else [])]) for tree in trees.values()
    )
    generator = torch.Generator().manual_seed(k * 100 + n)
    jobs = 67  # odd: every flat length has a vector part and a scalar tail

    def operand(*shape: int) -> torch.Tensor:
        scale = torch.exp(torch.randn(*shape, jobs, generator=generator) * 2)
        return torch.randn(*shape, jobs, generator=generator) * scale

    a, b, bias_values = operand(m, k), operand(k, n), operand(n)
    out = torch.empty(m, n, jobs)
    buffers: dict[tuple[str, tuple[int, ...]], torch.Tensor] = {}

    def scratch(label: str, *shape: int) -> torch.Tensor:
        return buffers.setdefault((label, shape), torch.empty(shape))

    emit_product(
        lambda fn, *args, **kwargs: fn(*args, **kwargs),
        scratch,
        "p:",
        trees,
        a,
        b,
        out,
        bias=bias_values if bias else None,
    )
    site = SITES[name]
    with torch.no_grad():
        for job in range(jobs):
            expected = site(
                a[:, :, job].clone(), b[:, :, job].clone(), bias_values[:, job].clone() if bias else None
            )
            assert torch.equal(out[:, :, job], expected), f"{name} {m}x{k}x{n}: job {job} differs"
