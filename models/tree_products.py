"""Matrix products for J jobs at once, each element computed along its kernel's measured tree.

``emit_product`` computes ``C = A @ B (+ bias)`` for every job, where the job dimension is the last one
of every operand, by elementwise ops that follow, for every output element, the tree ``blas_orders``
measured for the solo call: rounded products are one ``mul`` each (a correctly rounded product is the
same in any kernel), a plain node one ``add``, and a fused node one ``addcmul`` (a single-rounding FMA
in both of ATen's loops, vector and scalar). Elements sharing a tree are done together, over slices.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

import torch

from xorjobs.models.blas_orders import BIAS, Node, Tree, leaves
from xorjobs.models.kernel_paths import Emit

Tensor = torch.Tensor
Scratch = Callable[..., Tensor]  # scratch(name, *shape) -> a buffer reused from step to step


@dataclass(frozen=True)
class _Operands:
    lhs: Tensor  # (r, K, J): the rectangle's rows of A
    rhs: Tensor  # (K, c, J): its columns of B
    bias: Tensor | None  # (1, c, J)
    products: Tensor | None  # (K, r, c, J) when every product was computed up front

    def lhs_k(self, k: int) -> Tensor:
        return self.lhs[:, k].unsqueeze(1)

    def rhs_k(self, k: int) -> Tensor:
        return self.rhs[k].unsqueeze(0)


def _slices(indices: list[int]) -> list[slice]:
    """Sorted indices as slices: one if they are evenly spaced, else one per index."""
    if len(indices) == 1:
        return [slice(indices[0], indices[0] + 1)]
    step = indices[1] - indices[0]
    if all(b - a == step for a, b in itertools.pairwise(indices)):
        return [slice(indices[0], indices[-1] + 1, step)]
    return [slice(i, i + 1) for i in indices]


@dataclass(frozen=True)
class Rectangle:
    """Output rows x columns that share one tree, and which of its products are rounded on their own."""

    tree: Tree
    rows: slice
    columns: slice
    rounded: int  # products not fused into an add


ProductPlan = list[Rectangle]


def plan_product(trees: dict[tuple[int, int], Tree]) -> ProductPlan:
    """Group the output elements by tree into rectangles, once (``emit_planned`` then replays them)."""
    by_tree: dict[Tree, dict[int, list[int]]] = {}
    for (i, j), tree in sorted(trees.items(), key=lambda item: item[0]):
        by_tree.setdefault(tree, {}).setdefault(i, []).append(j)
    plan = []
    for tree, rows in by_tree.items():
        rounded = len([k for k in leaves(tree) if k != BIAS and k not in _fused_leaves(tree)])
        by_columns: dict[tuple[int, ...], list[int]] = {}
        for i, column_list in rows.items():
            by_columns.setdefault(tuple(column_list), []).append(i)
        for columns, row_list in by_columns.items():
            for row_slice in _slices(row_list):
                for column_slice in _slices(list(columns)):
                    plan.append(Rectangle(tree, row_slice, column_slice, rounded))
    return plan


def _fused_leaves(tree: Tree) -> set[int]:
    if not isinstance(tree, Node):
        return set()
    own = {tree.fused} if tree.fused is not None else set()
    return own | _fused_leaves(tree.left) | _fused_leaves(tree.right)


def emit_product(
    emit: Emit,
    scratch: Scratch,
    tag: str,
    trees: dict[tuple[int, int], Tree],
    a: Tensor,
    b: Tensor,
    out: Tensor,
    bias: Tensor | None = None,
) -> None:
    """``out = a @ b (+ bias)`` per job: ``a`` (M, K, J), ``b`` (K, N, J), ``out`` (M, N, J), ``bias``
    (N, J); any of them may be a view. ``tag`` keeps this product's scratch buffers apart."""
    emit_planned(emit, scratch, tag, plan_product(trees), a, b, out, bias)


def emit_planned(
    emit: Emit,
    scratch: Scratch,
    tag: str,
    plan: ProductPlan,
    a: Tensor,
    b: Tensor,
    out: Tensor,
    bias: Tensor | None = None,
) -> None:
    """``emit_product`` with the grouping already done: for a product computed every step."""
    for index, rectangle in enumerate(plan):
        lhs, rhs = a[rectangle.rows], b[:, rectangle.columns]
        target = out[rectangle.rows, rectangle.columns]
        r, c, jobs = target.shape
        products = None
        if rectangle.rounded >= 3:  # one broadcast mul for all of them beats one op each
            products = scratch(f"{tag}{index}:p", a.shape[1], r, c, jobs)
            emit(torch.mul, lhs.permute(1, 0, 2).unsqueeze(2), rhs.unsqueeze(1), out=products)
        column_bias = None if bias is None else bias[rectangle.columns].unsqueeze(0)
        operands = _Operands(lhs, rhs, column_bias, products)
        _emit_node(emit, scratch, f"{tag}{index}:", rectangle.tree, operands, target)


def _leaf_value(
    emit: Emit, scratch: Scratch, name: str, leaf: int, ops: _Operands, shape: torch.Size
) -> Tensor:
    if leaf == BIAS:
        assert ops.bias is not None, "a tree with a bias leaf needs a bias"
        return ops.bias
    if ops.products is not None:
        return ops.products[leaf]
    buffer = scratch(name, *shape)
    emit(torch.mul, ops.lhs_k(leaf), ops.rhs_k(leaf), out=buffer)
    return buffer


def _emit_node(emit: Emit, scratch: Scratch, name: str, tree: Tree, ops: _Operands, dest: Tensor) -> None:
    """Write ``tree``'s value into ``dest``, accumulating in place where the tree allows."""
    if not isinstance(tree, Node):
        emit(Tensor.copy_, dest, _leaf_value(emit, scratch, name + "l", tree, ops, dest.shape))
        return
    if tree.fused is not None:
        other = tree.right if tree.fused == tree.left else tree.left
        if isinstance(other, Node):
            _emit_node(emit, scratch, name + "a", other, ops, dest)
            accumulated = dest
        else:
            accumulated = _leaf_value(emit, scratch, name + "o", other, ops, dest.shape)
        emit(torch.addcmul, accumulated, ops.lhs_k(tree.fused), ops.rhs_k(tree.fused), out=dest)
        return
    left, right = tree.left, tree.right
    if isinstance(left, Node) or isinstance(right, Node):
        inner, outer = (left, right) if isinstance(left, Node) else (right, left)
        _emit_node(emit, scratch, name + "a", inner, ops, dest)
        if isinstance(outer, Node):
            value = scratch(name + "b", *dest.shape)
            _emit_node(emit, scratch, name + "b", outer, ops, value)
        else:
            value = _leaf_value(emit, scratch, name + "o", outer, ops, dest.shape)
        emit(torch.add, dest, value, out=dest)
        return
    first = _leaf_value(emit, scratch, name + "x", left, ops, dest.shape)
    second = _leaf_value(emit, scratch, name + "y", right, ops, dest.shape)
    emit(torch.add, first, second, out=dest)
