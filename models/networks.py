"""The ``nn.Sequential`` variants: layer widths and their construction order.

The layers are created one after another, in the seed's order, right after seeding: that order decides
which random numbers each ``nn.Linear`` draws for its default init, so it is part of the contract.
"""

from __future__ import annotations

import itertools

import torch

# Widths of the layers, input first. ``nn`` is the seed's "xor-nn", ``wide_deep`` its "xor-nn-wide-deep".
LAYER_WIDTHS: dict[str, tuple[int, ...]] = {
    "nn": (2, 2, 1),
    "wide_deep": (2, 10, 10, 10, 1),
}


def build_sequential(variant: str) -> torch.nn.Sequential:
    """Build the seed's model on the CPU: ``Linear`` layers each followed by the one shared ``Sigmoid``."""
    widths = LAYER_WIDTHS[variant]
    linears = [torch.nn.Linear(a, b, bias=True) for a, b in itertools.pairwise(widths)]
    sigmoid = torch.nn.Sigmoid()
    layers: list[torch.nn.Module] = []
    for linear in linears:
        layers += [linear, sigmoid]
    return torch.nn.Sequential(*layers)
