"""Training a dual encoder against a negative cache (rankgrad.negative_cache).

A toy corpus of token-bag documents; each query is a noisy subset of its document's
tokens. Every step the handler scores the queries against the cache of earlier
documents, samples one cached document per query from the softmax, re-embeds it with
the document tower, writes the fresh embedding back and enqueues the batch's positives.

    python examples/negative_cache_example.py   # with rankgrad[torch]; STEPS=50 for a quick run
"""

import os
import tempfile

import torch
import torch.nn.functional as F

from rankgrad.negative_cache import CacheClassificationLoss, CacheLossHandler, CacheManager

torch.manual_seed(0)
device = "cuda" if torch.cuda.is_available() else "cpu"
VOCAB, N_DOCS, DOC_LEN, Q_LEN, DIM, BATCH = 2000, 3000, 12, 4, 32, 64

docs = torch.randint(0, VOCAB, (N_DOCS, DOC_LEN), device=device)


def queries_for(doc_ids):
    pick = torch.rand(len(doc_ids), DOC_LEN, device=device).argsort(1)[:, :Q_LEN]
    return docs[doc_ids].gather(1, pick)


class Tower(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.bag = torch.nn.EmbeddingBag(VOCAB, DIM, mode="mean")

    def forward(self, tokens):
        return F.normalize(self.bag(tokens), dim=-1)


query_tower, doc_tower = Tower().to(device), Tower().to(device)
opt = torch.optim.Adam([*query_tower.parameters(), *doc_tower.parameters()], lr=1e-2)

# The cache stores each document's tokens (to re-embed it) and its last embedding.
specs = {"tokens": ((DOC_LEN,), torch.int64), "embedding": ((DIM,), torch.float32)}
manager = CacheManager(specs, cache_size=1024, use_lru=True)
loss_fn = CacheClassificationLoss(
    embedding_key="embedding",
    data_keys=("tokens",),
    score_transform=lambda s: 20.0 * s,  # cosine similarity x 20, as in-batch losses use
    generator=torch.Generator(device).manual_seed(0),
)
handler = CacheLossHandler(manager, loss_fn, device=device)


def doc_network(data):
    return doc_tower(data["tokens"])


def recall_at_10(n=500):
    ids = torch.arange(n, device=device)
    with torch.no_grad():
        top = (query_tower(queries_for(ids)) @ doc_tower(docs).T).topk(10).indices
    return (top == ids[:, None]).any(1).float().mean().item()


STEPS = int(os.environ.get("STEPS", 600))
for step in range(1, STEPS + 1):
    doc_ids = torch.randint(0, N_DOCS, (BATCH,), device=device)
    q = query_tower(queries_for(doc_ids))
    d = doc_tower(docs[doc_ids])
    out = handler(doc_network, q, d, {"tokens": docs[doc_ids]})
    opt.zero_grad()
    out.training_loss.backward()
    opt.step()
    if step % 100 == 0:
        filled = int(handler.cache.filled.sum())
        print(
            f"step {step:4d}  cross-entropy over the cache {out.interpretable_loss.item():.3f}  "
            f"staleness {out.staleness.item():.4f}  cache {filled}/{manager.cache_size}  "
            f"recall@10 {recall_at_10():.3f}"
        )

# The cache is training state: checkpoint it with the model (plain tensors and dicts, so
# torch.load(weights_only=True) reads it) and a resumed run continues with the same cache,
# ages and sampling generator.
checkpoint = {
    "query_tower": query_tower.state_dict(),
    "doc_tower": doc_tower.state_dict(),
    "optimizer": opt.state_dict(),
    "cache": handler.state_dict(),
}
path = os.path.join(tempfile.gettempdir(), "negative_cache_example.pt")
torch.save(checkpoint, path)
resumed = CacheLossHandler(manager, loss_fn, device=device)
resumed.load_state_dict(torch.load(path, weights_only=True)["cache"])
assert torch.equal(resumed.cache.data["embedding"], handler.cache.data["embedding"])
print(f"checkpoint: {int(resumed.cache.filled.sum())} cached documents restored from {path}")
