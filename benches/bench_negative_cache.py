"""Negative cache vs in-batch negatives on a synthetic retrieval task with hard negatives.

The corpus is made of tight clusters: every document of a cluster carries most of the
cluster's shared tokens plus a few tokens of its own, and a query names its cluster
with a few shared tokens and its document with some of that document's own tokens, in
a query vocabulary the model has to align with the document vocabulary. Negatives from
other clusters (what a batch of random queries supplies) are easy: once the encoders
separate the clusters the in-batch loss saturates and the documents' own tokens stop
being learned. Same-cluster documents, which a cache of recent positives holds and
samples in proportion to their score, keep teaching them.

A dual encoder (one sparse EmbeddingBag + L2 normalisation per side) is trained from
the same initialisation on the same batches, with the same batch size, steps, SparseAdam
optimiser and scale, once per row of RUNS:
  * in-batch: rankgrad.nn.MultipleNegativesRankingLoss(scale, "cosine")
  * cache:    rankgrad.negative_cache.CacheLossHandler, score_transform = scale * s
              (the same logits, over the cache instead of the batch)
and evaluated by recall@10 of held-out queries against the whole corpus. Time per step
is the median over the steps (robust to other jobs on the machine). Writes
benches/results/negative_cache.md and negative_cache.png.
"""

from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from rankgrad.negative_cache import CacheClassificationLoss, CacheLossHandler, CacheManager
from rankgrad.nn import MultipleNegativesRankingLoss

SEED = 0
N_CLUSTERS = 400
DOCS_PER_CLUSTER = 25
CLUSTER_TOKENS = 12  # shared by a cluster
DOC_CLUSTER_TOKENS = 8  # of them in each document
OWN_TOKENS = 3  # tokens of the document's own
Q_CLUSTER, Q_OWN, Q_NOISE = 3, 2, 1  # tokens in a query
DIM = 64
BATCH = 32
STEPS = 3000
EVAL_EVERY = 200
MID_STEP = 1000
LR = 3e-2
SCALE = 20.0
# (label, cache size, top_k); None = in-batch negatives
RUNS = [
    ("in-batch (MultipleNegativesRankingLoss)", None, None),
    ("negative cache 4096", 4096, None),
    ("negative cache 2048", 2048, None),
    ("negative cache 4096, top_k=64", 4096, 64),
]
N_EVAL = 2000
K = 10

N_DOCS = N_CLUSTERS * DOCS_PER_CLUSTER
VOCAB = N_CLUSTERS * CLUSTER_TOKENS + N_DOCS * OWN_TOKENS
DOC_LEN = DOC_CLUSTER_TOKENS + OWN_TOKENS
RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


@dataclass
class Task:
    docs: torch.Tensor  # [N_DOCS, DOC_LEN] token ids
    cluster_tokens: torch.Tensor  # [N_CLUSTERS, CLUSTER_TOKENS]
    own_tokens: torch.Tensor  # [N_DOCS, OWN_TOKENS]

    def queries(self, doc_ids: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        """One fresh query per document: some of its cluster's tokens, some of its own, noise."""
        n = doc_ids.shape[0]
        cl = self.cluster_tokens[doc_ids // DOCS_PER_CLUSTER]
        pick_c = torch.rand(n, CLUSTER_TOKENS, generator=g).argsort(1)[:, :Q_CLUSTER]
        pick_o = torch.rand(n, OWN_TOKENS, generator=g).argsort(1)[:, :Q_OWN]
        noise = torch.randint(0, VOCAB, (n, Q_NOISE), generator=g)
        return torch.cat([cl.gather(1, pick_c), self.own_tokens[doc_ids].gather(1, pick_o), noise], 1)


def make_task(g: torch.Generator) -> Task:
    cluster_tokens = torch.arange(N_CLUSTERS * CLUSTER_TOKENS).view(N_CLUSTERS, CLUSTER_TOKENS)
    own = N_CLUSTERS * CLUSTER_TOKENS + torch.arange(N_DOCS * OWN_TOKENS).view(N_DOCS, OWN_TOKENS)
    pick = torch.rand(N_DOCS, CLUSTER_TOKENS, generator=g).argsort(1)[:, :DOC_CLUSTER_TOKENS]
    shared = cluster_tokens.repeat_interleave(DOCS_PER_CLUSTER, 0).gather(1, pick)
    return Task(torch.cat([shared, own], 1), cluster_tokens, own)


class Encoder(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.bag = torch.nn.EmbeddingBag(VOCAB, DIM, mode="mean", sparse=True)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.bag(tokens), dim=-1)


def recall_at_k(q_enc, d_enc, task, eval_docs, eval_queries) -> float:
    with torch.no_grad():
        d = d_enc(task.docs)
        top = (q_enc(eval_queries) @ d.T).topk(K, dim=1).indices
    return float((top == eval_docs[:, None]).any(1).float().mean())


def train(cache_size, top_k, task: Task, eval_docs, eval_queries):
    torch.manual_seed(SEED)
    q_enc, d_enc = Encoder(), Encoder()
    opt = torch.optim.SparseAdam(list(q_enc.parameters()) + list(d_enc.parameters()), lr=LR)
    g = torch.Generator().manual_seed(SEED + 1)  # the same training batches for both methods
    if cache_size is None:
        mnrl = MultipleNegativesRankingLoss(scale=SCALE, similarity="cosine")
    else:
        specs = {"tokens": ((DOC_LEN,), torch.int64), "embedding": ((DIM,), torch.float32)}
        loss_fn = CacheClassificationLoss(
            "embedding",
            ("tokens",),
            score_transform=lambda s: SCALE * s,
            top_k=top_k,
            generator=torch.Generator().manual_seed(SEED + 2),
        )
        handler = CacheLossHandler(CacheManager(specs, cache_size), loss_fn)
        doc_network = lambda data: d_enc(data["tokens"])  # noqa: E731
    curve, times, staleness = [(0, recall_at_k(q_enc, d_enc, task, eval_docs, eval_queries))], [], []
    for step in range(1, STEPS + 1):
        doc_ids = torch.randint(0, N_DOCS, (BATCH,), generator=g)
        queries = task.queries(doc_ids, g)
        t0 = time.perf_counter()
        q = q_enc(queries)
        d = d_enc(task.docs[doc_ids])
        if cache_size is None:
            loss = mnrl(q, d)
        else:
            out = handler(doc_network, q, d, {"tokens": task.docs[doc_ids]})
            loss = out.training_loss
            staleness.append(float(out.staleness))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
        if step % EVAL_EVERY == 0:
            curve.append((step, recall_at_k(q_enc, d_enc, task, eval_docs, eval_queries)))
            print(f"  step {step:5d}  recall@{K} {curve[-1][1]:.3f}", flush=True)
    last = staleness[-EVAL_EVERY:]
    return {
        "curve": curve,
        "ms": 1000.0 * float(torch.tensor(times).median()),
        "staleness": sum(last) / len(last) if last else None,
    }


def main():
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(SEED)
    task = make_task(g)
    eval_gen = torch.Generator().manual_seed(SEED + 100)  # held-out queries, never trained on
    eval_docs = torch.randint(0, N_DOCS, (N_EVAL,), generator=eval_gen)
    eval_queries = task.queries(eval_docs, eval_gen)
    print(
        f"corpus {N_DOCS} docs in {N_CLUSTERS} clusters of {DOCS_PER_CLUSTER}, vocab {VOCAB}, "
        f"batch {BATCH}, {STEPS} steps"
    )
    runs = {}
    for label, cache_size, top_k in RUNS:
        print(label, flush=True)
        runs[label] = train(cache_size, top_k, task, eval_docs, eval_queries)
    write_results(runs)


def write_results(runs):
    os.makedirs(RESULTS, exist_ok=True)
    base_ms = runs[RUNS[0][0]]["ms"]
    lines = [
        f"Synthetic clustered retrieval: {N_DOCS} documents in {N_CLUSTERS} clusters of "
        f"{DOCS_PER_CLUSTER}, {N_EVAL} held-out queries, batch size {BATCH}, {STEPS} steps, "
        f"SparseAdam lr {LR}, cosine x {SCALE}, EmbeddingBag dim {DIM}; median time of a training step "
        f"(forward, loss, cache update, backward, optimiser) on 1 CPU thread "
        f"({platform.processor() or platform.machine()}), seed {SEED}. "
        f"Staleness: mean over the last {EVAL_EVERY} steps.",
        "",
        f"| negatives | recall@{K} at step {MID_STEP} | recall@{K} at step {STEPS} | ms / step "
        "| time vs in-batch | staleness |",
        "|---|---|---|---|---|---|",
    ]
    for label, run in runs.items():
        at = dict(run["curve"])
        stale = "-" if run["staleness"] is None else f"{run['staleness']:.4f}"
        lines.append(
            f"| {label} | {at[MID_STEP]:.3f} | {at[STEPS]:.3f} | {run['ms']:.2f} "
            f"| {run['ms'] / base_ms:.2f}x | {stale} |"
        )
    table = "\n".join(lines) + "\n"
    with open(os.path.join(RESULTS, "negative_cache.md"), "w") as f:
        f.write(table)
    print(table)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for label, run in runs.items():
        steps, rec = zip(*run["curve"])
        ax.plot(steps, rec, marker="o", markersize=3, label=label)
    ax.set_xlabel("training step")
    ax.set_ylabel(f"recall@{K}, held-out queries")
    ax.set_title(f"Negative cache vs in-batch negatives (batch {BATCH})")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(RESULTS, "negative_cache.png"), dpi=120)


if __name__ == "__main__":
    main()
