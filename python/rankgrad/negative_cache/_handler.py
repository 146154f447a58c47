"""One training step's cache work: the loss, the refreshes and the new positives."""

from __future__ import annotations

from typing import Mapping, Union

import torch
from torch import Tensor

from ._cache import CacheManager
from ._distributed import route_updates_to_owners
from ._loss import CacheClassificationLoss, CacheLossReturn, DocNetwork

__all__ = ["CacheLossHandler"]


class CacheLossHandler:
    """Owns `handler.cache`; each call is one training step's cache work.

    Computes `cache_loss(doc_network, q, d_pos, cache)`, writes the refreshed embeddings
    back (to the owning rank when the loss is distributed), and enqueues the batch's
    positives, `pos_doc_data` plus their detached embeddings, into this rank's cache.

    Args:
      cache_manager: lays out the cache; its specs hold the loss's embedding_key (a float
        vector `(D,)`) and data_keys.
      cache_loss: the loss computed every step.
      device: where the cache lives.
    """

    def __init__(
        self,
        cache_manager: CacheManager,
        cache_loss: CacheClassificationLoss,
        *,
        device: Union[str, torch.device] = "cpu",
    ) -> None:
        if not isinstance(cache_manager, CacheManager):
            raise TypeError(f"cache_manager must be a CacheManager, got {type(cache_manager).__name__}")
        if not isinstance(cache_loss, CacheClassificationLoss):
            raise TypeError(f"cache_loss must be a CacheClassificationLoss, got {type(cache_loss).__name__}")
        specs = cache_manager.specs
        key = cache_loss.embedding_key
        if key not in specs:
            raise ValueError(f"specs has no field for the embedding_key {key!r}; it has {sorted(specs)}")
        shape, dtype = specs[key]
        if len(shape) != 1 or not dtype.is_floating_point:
            raise ValueError(f"specs[{key!r}] must be a float vector ((D,), float dtype), got {specs[key]}")
        missing = [k for k in cache_loss.data_keys if k not in specs]
        if missing:
            raise ValueError(f"specs has no field for the data_keys {missing}; it has {sorted(specs)}")
        self.cache_manager = cache_manager
        self.cache_loss = cache_loss
        self.cache = cache_manager.init_cache(device)

    def __call__(
        self,
        doc_network: DocNetwork,
        query_embeddings: Tensor,
        pos_doc_embeddings: Tensor,
        pos_doc_data: Mapping[str, Tensor],
    ) -> CacheLossReturn:
        """One training step.

        Args:
          doc_network: `{data_key: Tensor[B, ...]} -> Tensor[B, D]`, the document tower.
          query_embeddings: [B, D] float.
          pos_doc_embeddings: [B, D] float, the positives' embeddings.
          pos_doc_data: {name: Tensor[B, *shape]} for every spec field but the embedding.

        Returns:
          The loss's `CacheLossReturn`; differentiate its `training_loss`.
        """
        key = self.cache_loss.embedding_key
        if not isinstance(pos_doc_data, Mapping):
            raise TypeError("pos_doc_data must be a dict {name: Tensor[B, ...]}")
        want = set(self.cache_manager.specs) - {key}
        if set(pos_doc_data) != want:
            raise ValueError(f"pos_doc_data must have the fields {sorted(want)}, got {sorted(pos_doc_data)}")
        out = self.cache_loss(doc_network, query_embeddings, pos_doc_embeddings, self.cache)
        idx, data = out.updated_item_indices, out.updated_item_data
        if self.cache_loss.distributed:
            idx, data = route_updates_to_owners(idx, data, self.cache.cache_size, self.cache_loss.group)
        new_items = dict(pos_doc_data)
        new_items[key] = pos_doc_embeddings.detach()
        self.cache = self.cache_manager.update_cache(
            self.cache,
            new_items=new_items,
            updated_item_indices=idx,
            updated_item_data=data,
            inplace=True,
        )
        return out
