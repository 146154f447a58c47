"""The same kind of small torch ranker as demo.py, trained with the listwise losses:
rankgrad.lambda_loss (NDCGLoss2++, Rust kernel on CPU), softmax_loss and listmle_loss.

Prints NDCG@10 on held-out queries before and after training, and the time per step.
    PYTHONPATH=python python examples/demo_listwise.py
"""

from __future__ import annotations

import time

import torch

import rankgrad
from rankgrad.listwise import lambda_loss, listmle_loss, softmax_loss

QUERIES, DOCS, FEATURES = 400, 120, 24
BATCH, EPOCHS = 32, 5


def make_data(seed: int = 0):
    """Documents with features; relevance 0..4 from a hidden non-linear score plus noise."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(QUERIES, DOCS, FEATURES, generator=g)
    w1 = torch.randn(FEATURES, 16, generator=g)
    w2 = torch.randn(16, generator=g)
    hidden = torch.tanh(x @ w1) @ w2 + 0.3 * torch.randn(QUERIES, DOCS, generator=g)
    pct = hidden.argsort(-1).argsort(-1).float() / (DOCS - 1)
    y = torch.bucketize(pct, torch.tensor([0.70, 0.85, 0.93, 0.98]))
    mask = torch.rand(QUERIES, DOCS, generator=g) > 0.1  # lists of different lengths
    return x, y.float(), mask


def ndcg10(net, x, y, mask) -> float:
    with torch.no_grad():
        scores = net(x).squeeze(-1)
    return rankgrad.ndcg(scores, y, k=10, mask=mask).mean().item()


LOSSES = {
    "lambda_loss (ndcg2pp)": lambda s, y, m: lambda_loss(s, y, "ndcg2pp", mask=m),
    "lambda_loss (ndcg2pp, torch)": lambda s, y, m: lambda_loss(s, y, "ndcg2pp", mask=m, backend="torch"),
    "softmax_loss": lambda s, y, m: softmax_loss(s, y, m),
    "listmle_loss": lambda s, y, m: listmle_loss(s, y, m),
}


def train(loss_fn, data, test):
    torch.manual_seed(1)
    net = torch.nn.Sequential(torch.nn.Linear(FEATURES, 64), torch.nn.ReLU(), torch.nn.Linear(64, 1))
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    x, y, mask = data
    before = ndcg10(net, *test)
    times = []
    for epoch in range(EPOCHS):
        order = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(epoch))
        for i in range(0, len(order), BATCH):
            idx = order[i : i + BATCH]
            t0 = time.perf_counter()
            opt.zero_grad()
            loss = loss_fn(net(x[idx]).squeeze(-1), y[idx], mask[idx])
            loss.backward()
            opt.step()
            times.append(time.perf_counter() - t0)
    return before, ndcg10(net, *test), sum(times) / len(times)


def main() -> None:
    x, y, mask = make_data()
    cut = QUERIES * 4 // 5
    data, test = (x[:cut], y[:cut], mask[:cut]), (x[cut:], y[cut:], mask[cut:])
    print(f"{cut} training and {QUERIES - cut} test queries, up to {DOCS} documents each, {EPOCHS} epochs")
    print(f"{'loss':<30}{'NDCG@10 before':>16}{'after':>10}{'ms/step':>10}")
    for name, fn in LOSSES.items():
        before, after, step = train(fn, data, test)
        print(f"{name:<30}{before:>16.4f}{after:>10.4f}{step * 1e3:>10.2f}")
        assert after > before + 0.05, f"training with {name} should improve NDCG@10"


if __name__ == "__main__":
    main()
