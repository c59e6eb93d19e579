"""The seed document's scripts (boostcourse Lab 08-2), kept as written, for live comparisons.

Only what a sweep varies is a parameter (seed, learning rate, steps, log interval); ``print(step,
cost.item())`` collects into a list instead. The backprop script's ``torch.Tensor(2, 2)`` weights are
uninitialised memory in the seed; issue 2 defines them (normal_ on the CPU after seeding, in the order
w1, b1, w2, b2), and that is the only line changed. The type hints are added; the defaults are the
seed's own (so they are not read from ``xorjobs.defaults``: this is the yardstick, not the product).
"""

from __future__ import annotations

import torch

SeedRun = tuple[list[tuple[int, float]], list[float], list[float], float]
"""What a script printed (``(step, cost)`` pairs), then its final hypothesis, labels and accuracy."""


def xor_nn(
    seed: int = 777,
    learning_rate: float = 1,
    steps: int = 10001,
    log_every: int = 100,
    wide_deep: bool = False,
) -> SeedRun:
    device = "cpu"
    torch.manual_seed(seed)
    X = torch.FloatTensor([[0, 0], [0, 1], [1, 0], [1, 1]]).to(device)
    Y = torch.FloatTensor([[0], [1], [1], [0]]).to(device)
    if wide_deep:
        linear1 = torch.nn.Linear(2, 10, bias=True)
        linear2 = torch.nn.Linear(10, 10, bias=True)
        linear3 = torch.nn.Linear(10, 10, bias=True)
        linear4 = torch.nn.Linear(10, 1, bias=True)
        sigmoid = torch.nn.Sigmoid()
        model = torch.nn.Sequential(
            linear1, sigmoid, linear2, sigmoid, linear3, sigmoid, linear4, sigmoid
        ).to(device)
    else:
        linear1 = torch.nn.Linear(2, 2, bias=True)
        linear2 = torch.nn.Linear(2, 1, bias=True)
        sigmoid = torch.nn.Sigmoid()
        model = torch.nn.Sequential(linear1, sigmoid, linear2, sigmoid).to(device)
    criterion = torch.nn.BCELoss().to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=learning_rate)
    printed: list[tuple[int, float]] = []
    for step in range(steps):
        optimizer.zero_grad()
        hypothesis = model(X)
        cost = criterion(hypothesis, Y)
        cost.backward()
        optimizer.step()
        if step % log_every == 0:
            printed.append((step, cost.item()))
    with torch.no_grad():
        hypothesis = model(X)
        predicted = (hypothesis > 0.5).float()
        accuracy = (predicted == Y).float().mean()
    return printed, hypothesis.reshape(-1).tolist(), predicted.reshape(-1).tolist(), accuracy.item()


def xor_backprop(
    seed: int = 777, learning_rate: float = 1, steps: int = 10001, log_every: int = 100
) -> SeedRun:
    device = "cpu"
    X = torch.FloatTensor([[0, 0], [0, 1], [1, 0], [1, 1]]).to(device)
    Y = torch.FloatTensor([[0], [1], [1], [0]]).to(device)
    torch.manual_seed(seed)
    # The one change (issue 2): defined init instead of uninitialised memory.
    w1 = torch.nn.init.normal_(torch.empty(2, 2)).to(device)
    b1 = torch.nn.init.normal_(torch.empty(2)).to(device)
    w2 = torch.nn.init.normal_(torch.empty(2, 1)).to(device)
    b2 = torch.nn.init.normal_(torch.empty(1)).to(device)

    def sigmoid(x: torch.Tensor) -> torch.Tensor:
        return 1.0 / (1.0 + torch.exp(-x))

    def sigmoid_prime(x: torch.Tensor) -> torch.Tensor:
        return sigmoid(x) * (1 - sigmoid(x))

    printed: list[tuple[int, float]] = []
    for step in range(steps):
        l1 = torch.add(torch.matmul(X, w1), b1)
        a1 = sigmoid(l1)
        l2 = torch.add(torch.matmul(a1, w2), b2)
        Y_pred = sigmoid(l2)
        cost = -torch.mean(Y * torch.log(Y_pred) + (1 - Y) * torch.log(1 - Y_pred))
        d_Y_pred = (Y_pred - Y) / (Y_pred * (1.0 - Y_pred) + 1e-7)
        d_l2 = d_Y_pred * sigmoid_prime(l2)
        d_b2 = d_l2
        d_w2 = torch.matmul(torch.transpose(a1, 0, 1), d_b2)
        d_a1 = torch.matmul(d_b2, torch.transpose(w2, 0, 1))
        d_l1 = d_a1 * sigmoid_prime(l1)
        d_b1 = d_l1
        d_w1 = torch.matmul(torch.transpose(X, 0, 1), d_b1)
        w1 = w1 - learning_rate * d_w1
        b1 = b1 - learning_rate * torch.mean(d_b1, 0)
        w2 = w2 - learning_rate * d_w2
        b2 = b2 - learning_rate * torch.mean(d_b2, 0)
        if step % log_every == 0:
            printed.append((step, cost.item()))
    # The seed's backprop script stops here; its hypothesis and accuracy are computed as in xor-nn.
    with torch.no_grad():
        l1 = torch.add(torch.matmul(X, w1), b1)
        a1 = sigmoid(l1)
        l2 = torch.add(torch.matmul(a1, w2), b2)
        hypothesis = sigmoid(l2)
        predicted = (hypothesis > 0.5).float()
        accuracy = (predicted == Y).float().mean()
    return printed, hypothesis.reshape(-1).tolist(), predicted.reshape(-1).tolist(), accuracy.item()


def run_seed_script(
    variant: str, seed: int, learning_rate: float, steps: int = 10001, log_every: int = 100
) -> SeedRun:
    if variant == "backprop":
        return xor_backprop(seed, learning_rate, steps, log_every)
    return xor_nn(seed, learning_rate, steps, log_every, wide_deep=variant == "wide_deep")
