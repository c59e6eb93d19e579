"""Each job's initial weights, drawn from a generator of its own: exactly what its solo run starts from.

Both packed engines build K jobs' starting points without touching the global generator and without
building K modules (~25-50 µs per job).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

Tensor = torch.Tensor


def sequential_init(shapes: Sequence[tuple[int, int]], seed: int) -> list[tuple[Tensor, Tensor]]:
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


def backprop_init(seed: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``models.backprop.initial_params(seed)`` (``normal_`` fills of w1, b1, w2, b2 in that order after
    ``torch.manual_seed``), drawn from a generator of its own."""
    generator = torch.Generator().manual_seed(seed)
    shapes: tuple[tuple[int, ...], ...] = ((2, 2), (2,), (2, 1), (1,))
    w1, b1, w2, b2 = (torch.nn.init.normal_(torch.empty(shape), generator=generator) for shape in shapes)
    return w1, b1, w2, b2
