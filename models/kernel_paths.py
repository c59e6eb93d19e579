"""Small tools for taking, over a job dimension, the arithmetic path the solo kernels take.

Shared by the bit-exact packed engine (``models.packed_exact``) and the loop that runs packs
(``models.pack_loop``): the 4-term sum in the solo runs' order, ATen's vector chunk, recorded op lists
and reused work buffers.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

Tensor = torch.Tensor

# ``binary_cross_entropy_backward``'s EPSILON (a double in ATen, cast to the float scalar type).
BCE_EPSILON = 1e-12


def vector_chunk() -> int:
    """Elements per iteration of ATen's ``vectorized_loop``: two ``Vectorized<float>`` registers.

    ``Vectorized<float>`` holds 16 floats when ATen dispatches AVX-512 kernels and 8 otherwise (AVX2;
    the DEFAULT build's "vector" ``exp`` is the scalar one, so its split does not matter).
    """
    return 32 if torch.backends.cpu.get_cpu_capability().startswith("AVX512") else 16


def now(fn: Callable[..., object], *args: object, **kwargs: object) -> None:
    """Run an op right away (the counterpart of recording it in a ``Program``)."""
    fn(*args, **kwargs)


class Program:
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


Emit = Callable[..., None]
"""Where an op goes: ``now`` runs it, a ``Program`` records it."""


def sum4(t: Tensor, out: Tensor, emit: Emit = now) -> Tensor:
    """Sum over the leading sample dimension of size 4 as ``((s0 + s1) + s2) + s3``, into ``out``.

    The order measured for every 4-term reduction the solo runs do: the ``mm`` giving weight gradients
    (sum over the batch), the bias gradient (``sum_to_size`` over the batch), ``BCELoss``'s and the
    backprop script's ``mean`` and ``mean(d_b, 0)``.
    """
    emit(torch.add, t[0], t[1], out=out)
    emit(Tensor.add_, out, t[2])
    emit(Tensor.add_, out, t[3])
    return out


class Scratch:
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
