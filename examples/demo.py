"""A small torch ranker trained with rankgrad.approx_ndcg_loss on synthetic query–document data.

Prints NDCG@10 on held-out queries before and after training, and the time per training step
with the Rust kernels beside the torch-native path (the one CUDA tensors take).
    python examples/demo.py      (with rankgrad[torch] installed; in a checkout: make demo)
"""

from __future__ import annotations

import time

import torch

import rankgrad

QUERIES, DOCS, FEATURES = 600, 200, 24
BATCH, EPOCHS = 32, 6


def make_data(seed: int = 0):
    """Documents with features; relevance 0..4 from a hidden non-linear score plus noise."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(QUERIES, DOCS, FEATURES, generator=g)
    w1 = torch.randn(FEATURES, 16, generator=g)
    w2 = torch.randn(16, generator=g)
    hidden = torch.tanh(x @ w1) @ w2 + 0.3 * torch.randn(QUERIES, DOCS, generator=g)
    # per query, the top 2% get 4, the next 5% get 3, ... (graded relevance)
    pct = hidden.argsort(-1).argsort(-1).float() / (DOCS - 1)
    y = torch.bucketize(pct, torch.tensor([0.70, 0.85, 0.93, 0.98]))
    mask = torch.rand(QUERIES, DOCS, generator=g) > 0.1  # lists of different lengths
    return x, y.float(), mask


def model(seed: int = 1) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(FEATURES, 64), torch.nn.ReLU(), torch.nn.Linear(64, 1))


def ndcg10(net, x, y, mask) -> float:
    with torch.no_grad():
        scores = net(x).squeeze(-1)
    return rankgrad.ndcg(scores, y, k=10, mask=mask).mean().item()


def train(backend: str, data, test):
    net = model()
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    x, y, mask = data
    before = ndcg10(net, *test)
    step_times, loss_times = [], []
    for epoch in range(EPOCHS):
        order = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(epoch))
        for i in range(0, len(order), BATCH):
            idx = order[i : i + BATCH]
            t0 = time.perf_counter()
            opt.zero_grad()
            scores = net(x[idx]).squeeze(-1)
            leaf = scores.detach().requires_grad_()  # to time the loss on its own
            t1 = time.perf_counter()
            loss = rankgrad.approx_ndcg_loss(leaf, y[idx], temperature=0.5, mask=mask[idx], backend=backend)
            loss.backward()
            t2 = time.perf_counter()
            scores.backward(leaf.grad)
            opt.step()
            t3 = time.perf_counter()
            loss_times.append(t2 - t1)
            step_times.append(t3 - t0)
    return before, ndcg10(net, *test), sum(step_times) / len(step_times), sum(loss_times) / len(loss_times)


def main() -> None:
    x, y, mask = make_data()
    cut = QUERIES * 4 // 5
    data, test = (x[:cut], y[:cut], mask[:cut]), (x[cut:], y[cut:], mask[cut:])
    print(
        f"{cut} training and {QUERIES - cut} test queries, up to {DOCS} documents each, "
        f"batches of {BATCH} queries, {EPOCHS} epochs, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads"
    )
    rows = {b: train(b, data, test) for b in ("rust", "torch")}
    print(f"{'path':<14}{'NDCG@10 before':>16}{'after':>10}{'ms/step':>10}{'ms in loss':>12}")
    for b, (before, after, step, loss) in rows.items():
        name = "rankgrad/Rust" if b == "rust" else "torch-native"
        print(f"{name:<14}{before:>16.4f}{after:>10.4f}{step * 1e3:>10.2f}{loss * 1e3:>12.2f}")
    speed = rows["torch"][3] / rows["rust"][3]
    print(f"loss forward+backward: Rust {speed:.1f}x faster than the torch-native path")
    assert rows["rust"][1] > rows["rust"][0] + 0.05, "training should improve NDCG@10"


if __name__ == "__main__":
    main()
