"""The XOR data set, built exactly as the seed builds it."""

from __future__ import annotations

import torch


def xor_data(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(X, Y)``: the seed's ``torch.FloatTensor`` literals moved to ``device``.

    Creating them consumes no random numbers, so they may be built before or after seeding.
    """
    x = torch.FloatTensor([[0, 0], [0, 1], [1, 0], [1, 1]]).to(device)
    y = torch.FloatTensor([[0], [1], [1], [0]]).to(device)
    return x, y


def accuracy_of(hypothesis: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, float]:
    """The seed's accuracy: labels are ``hypothesis > 0.5``; accuracy is the mean of matches."""
    predicted = (hypothesis > 0.5).float()
    accuracy = (predicted == y).float().mean()
    return predicted, accuracy.item()
