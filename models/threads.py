"""Single-threaded ATen, for the code whose exactness depends on how a kernel splits its work."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run ATen single-threaded: a parallel ``sigmoid`` over more than 32768 elements would be split into
    per-thread ranges whose tails fall back to the scalar path at places the solo run does not."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
