"""The seed's first script: a 2-2-1 MLP trained with a hand-written backward pass.

The arithmetic below is the seed's, line for line (including ``+ 1e-7`` in the loss derivative, summed
weight gradients and averaged bias gradients): changing the order of any operation changes the last
bits of the result, and the reference values in ``shared/reference`` pin them.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from xorjobs.models.data import accuracy_of, xor_data


def sigmoid(x: torch.Tensor) -> torch.Tensor:
    return 1.0 / (1.0 + torch.exp(-x))


def sigmoid_prime(x: torch.Tensor) -> torch.Tensor:
    return sigmoid(x) * (1 - sigmoid(x))


Params = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def initial_params(seed: int, device: torch.device) -> Params:
    """The init the seed leaves undefined (``torch.Tensor(2, 2)`` is uninitialised memory).

    Defined by issue 2: after ``torch.manual_seed(seed)``, ``normal_`` fills w1, b1, w2, b2 in that
    order *on the CPU*, so the values do not depend on the device; then they move to ``device``.
    """
    torch.manual_seed(seed)
    w1 = torch.nn.init.normal_(torch.empty(2, 2))
    b1 = torch.nn.init.normal_(torch.empty(2))
    w2 = torch.nn.init.normal_(torch.empty(2, 1))
    b2 = torch.nn.init.normal_(torch.empty(1))
    return w1.to(device), b1.to(device), w2.to(device), b2.to(device)


def forward(x: torch.Tensor, params: Params) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Return ``(l1, a1, l2, Y_pred)`` as the seed computes them."""
    w1, b1, w2, b2 = params
    l1 = torch.add(torch.matmul(x, w1), b1)
    a1 = sigmoid(l1)
    l2 = torch.add(torch.matmul(a1, w2), b2)
    return l1, a1, l2, sigmoid(l2)


def bce_cost(y_pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return -torch.mean(y * torch.log(y_pred) + (1 - y) * torch.log(1 - y_pred))


def gradients(x: torch.Tensor, y: torch.Tensor, params: Params) -> tuple[torch.Tensor, Params]:
    """One forward and hand-written backward pass: ``(cost, (d_w1, d_b1, d_w2, d_b2))``.

    ``d_b1``/``d_b2`` are per-sample (the seed averages them in the update).
    """
    cost, grads, _ = _gradients_and_output(x, y, params)
    return cost, grads


def _gradients_and_output(
    x: torch.Tensor, y: torch.Tensor, params: Params
) -> tuple[torch.Tensor, Params, torch.Tensor]:
    """``gradients`` plus the forward pass's ``Y_pred`` (what early stopping looks at)."""
    w2 = params[2]
    l1, a1, l2, y_pred = forward(x, params)
    cost = bce_cost(y_pred, y)
    d_y_pred = (y_pred - y) / (y_pred * (1.0 - y_pred) + 1e-7)
    d_l2 = d_y_pred * sigmoid_prime(l2)
    d_b2 = d_l2
    d_w2 = torch.matmul(torch.transpose(a1, 0, 1), d_b2)
    d_a1 = torch.matmul(d_b2, torch.transpose(w2, 0, 1))
    d_l1 = d_a1 * sigmoid_prime(l1)
    d_b1 = d_l1
    d_w1 = torch.matmul(torch.transpose(x, 0, 1), d_b1)
    return cost, (d_w1, d_b1, d_w2, d_b2), y_pred


def train_backprop(
    seed: int,
    lr: float,
    steps: int,
    log_every: int,
    device: torch.device,
    on_log: Callable[[int, torch.Tensor], None],
    stops: Callable[[int, torch.Tensor], bool] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Train; call ``on_log(step, cost)`` at every logged step; return ``(hypothesis, Y)``.

    ``stops(step, y_pred)``, asked at each logged step after ``on_log`` with that step's forward
    output, ends the loop after this step's update (early stopping: the run is then the seed's loop
    with ``steps = step + 1``).
    """
    x, y = xor_data(device)
    w1, b1, w2, b2 = initial_params(seed, device)
    learning_rate = lr
    for step in range(steps):
        cost, (d_w1, d_b1, d_w2, d_b2), y_pred = _gradients_and_output(x, y, (w1, b1, w2, b2))
        w1 = w1 - learning_rate * d_w1
        b1 = b1 - learning_rate * torch.mean(d_b1, 0)
        w2 = w2 - learning_rate * d_w2
        b2 = b2 - learning_rate * torch.mean(d_b2, 0)
        if step % log_every == 0:
            on_log(step, cost)
            if stops is not None and stops(step, y_pred):
                break
    with torch.no_grad():
        hypothesis = forward(x, (w1, b1, w2, b2))[3]
    return hypothesis, y


__all__ = ["accuracy_of", "train_backprop"]
