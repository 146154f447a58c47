"""Negative cache for dual-encoder training (Lindgren et al., NeurIPS 2021).

A PyTorch port of google-research/negative_cache. A FIFO or LRU cache keeps earlier
documents with their (possibly stale) embeddings; `CacheClassificationLoss` gives a
loss whose gradient is, in expectation, that of the softmax cross-entropy over the
positive and every cached document, while only one cached document per query goes
through the document network; `CacheLossHandler` runs the loss and the cache updates
once per training step. With `distributed=True` the cache is sharded over the ranks
of torch.distributed and sampled as if it were one cache.

    specs = {"tokens": ((16,), torch.int64), "embedding": ((64,), torch.float32)}
    manager = CacheManager(specs, cache_size=4096)
    loss_fn = CacheClassificationLoss("embedding", ("tokens",))
    handler = CacheLossHandler(manager, loss_fn)
    out = handler(doc_network, q, d_pos, {"tokens": pos_tokens})
    out.training_loss.backward()

Modules: `_cache` (the cache and its update rule), `_sampling` (Gumbel-max draws),
`_loss` (the loss), `_distributed` (the sharded cache), `_handler` (one training step).
"""

from ._cache import CacheManager, NegativeCache
from ._distributed import route_updates_to_owners
from ._handler import CacheLossHandler
from ._loss import CacheClassificationLoss, CacheLossReturn

__all__ = [
    "CacheClassificationLoss",
    "CacheLossHandler",
    "CacheLossReturn",
    "CacheManager",
    "NegativeCache",
    "route_updates_to_owners",
]
