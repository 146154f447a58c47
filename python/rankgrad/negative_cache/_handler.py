"""One training step's cache work: the loss, the refreshes and the new positives."""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Union

import torch
from torch import Tensor

from ._cache import CacheManager, _cache_from_state
from ._distributed import _dist, refuse_step, route_updates_to_owners
from ._loss import CacheClassificationLoss, CacheLossReturn, DocNetwork

__all__ = ["CacheLossHandler"]


class CacheLossHandler:
    """Owns `handler.cache`; each call is one training step's cache work.

    Computes `cache_loss(doc_network, q, d_pos, cache)`, writes the refreshed embeddings
    back (to the owning rank when the loss is distributed), and enqueues the batch's
    positives, `pos_doc_data` plus their detached embeddings, into this rank's cache.
    With the loss's `exclude_keys`, `pos_doc_data` also tells the loss which slots hold
    each query's positive (left out of its negatives); the batch's own positives are
    enqueued after the loss, so they are never among the current step's candidates.

    Args:
      cache_manager: lays out the cache; its specs hold the loss's embedding_key (a float
        vector `(D,)`), data_keys and exclude_keys (integer or bool fields).
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
        excl = cache_loss.exclude_keys or ()
        missing = [k for k in excl if k not in specs]
        if missing:
            raise ValueError(f"specs has no field for the exclude_keys {missing}; it has {sorted(specs)}")
        floats = [k for k in excl if specs[k][1].is_floating_point]
        if floats:
            raise TypeError(
                f"exclude_keys {floats} are float fields: documents are matched exactly, on "
                "integer or bool fields (an id, token ids)"
            )
        self.cache_manager = cache_manager
        self.cache_loss = cache_loss
        self.cache = cache_manager.init_cache(device)

    def __call__(
        self,
        doc_network: DocNetwork,
        query_embeddings: Tensor,
        pos_doc_embeddings: Tensor,
        pos_doc_data: Mapping[str, Tensor],
        *,
        positive_logits: Optional[Tensor] = None,
    ) -> CacheLossReturn:
        """One training step.

        Args:
          doc_network: `{data_key: Tensor[B, ...]} -> Tensor[B, D]`, the document tower.
          query_embeddings: [B, D] float.
          pos_doc_embeddings: [B, D] float, the positives' embeddings (enqueued; scored
            unless `positive_logits` is given).
          pos_doc_data: {name: Tensor[B, *shape]} for every spec field but the embedding.
          positive_logits: [B] float, the positive class's logit given directly (see
            `CacheClassificationLoss.__call__`); default `t(<q, d_pos>)`.

        Returns:
          The loss's `CacheLossReturn`; differentiate its `training_loss`.
        """
        try:
            insert = self._check_positives(pos_doc_embeddings, pos_doc_data)
        except (TypeError, ValueError):
            if self.cache_loss.distributed:
                refuse_step(self.cache, self.cache_loss.group)  # the other ranks raise too
            raise
        excl = self.cache_loss.exclude_keys
        out = self.cache_loss(
            doc_network,
            query_embeddings,
            pos_doc_embeddings,
            self.cache,
            positive_logits=positive_logits,
            pos_doc_data=None if excl is None else {k: insert[k] for k in excl},
        )
        idx, data = out.updated_item_indices, out.updated_item_data
        if self.cache_loss.distributed:
            idx, data = route_updates_to_owners(idx, data, self.cache.cache_size, self.cache_loss.group)
        refresh = self.cache_manager._check_refresh(self.cache, idx, data, None)
        self.cache = self.cache_manager._apply(self.cache, refresh, insert, inplace=True)
        return out

    def _check_positives(
        self, pos_doc_embeddings: Tensor, pos_doc_data: Mapping[str, Tensor]
    ) -> Dict[str, Tensor]:
        """The batch's positives as cache rows, checked before the loss runs."""
        key = self.cache_loss.embedding_key
        manager = self.cache_manager
        if not isinstance(pos_doc_data, Mapping):
            raise TypeError("pos_doc_data must be a dict {name: Tensor[B, ...]}")
        want = set(manager.specs) - {key}
        if set(pos_doc_data) != want:
            raise ValueError(f"pos_doc_data must have the fields {sorted(want)}, got {sorted(pos_doc_data)}")
        size = manager.cache_size
        if isinstance(pos_doc_embeddings, Tensor) and pos_doc_embeddings.dim() >= 1:
            if pos_doc_embeddings.shape[0] > size:
                raise ValueError(
                    f"pos_doc_embeddings has {pos_doc_embeddings.shape[0]} rows, more than "
                    f"cache_size={size}: every step enqueues its whole batch of positives"
                )
        names = {k: f"pos_doc_data[{k!r}]" for k in want}
        names[key] = "pos_doc_embeddings"
        new_items = {**pos_doc_data, key: pos_doc_embeddings}
        return manager._check_new_items(self.cache, new_items, None, "pos_doc_embeddings", names, key)

    def state_dict(self) -> Dict[str, Any]:
        """The training state: the cache (data, ages, filled flags) and the loss's generator
        state, as tensors, ints, strs, lists and dicts (`torch.load(weights_only=True)`
        reads it). With a distributed loss, each rank saves its own shard, recorded as
        {"rank", "world_size"}.

        Like `nn.Module.state_dict`, the cache tensors are the handler's own: save the
        dict (or `copy.deepcopy` it) before the next step updates them in place.

        Returns:
          {"cache": CacheManager.state_dict(cache), "loss": CacheClassificationLoss.state_dict()}
          plus {"shard": {"rank": int, "world_size": int}} when distributed.
        """
        out: Dict[str, Any] = {
            "cache": self.cache_manager.state_dict(self.cache),
            "loss": self.cache_loss.state_dict(),
        }
        if self.cache_loss.distributed:
            out["shard"] = self._shard()
        return out

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restores what `state_dict` saved; the cache stays on this handler's device.

        Args:
          state_dict: from `state_dict` of a handler with the same specs, cache_size and
            generator kind (and, when distributed, the same rank and world size).
            Nothing changes when it is refused (ValueError naming the entry).
        """
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"state_dict must be a dict, got {type(state_dict).__name__}")
        want = {"cache", "loss"} | ({"shard"} if self.cache_loss.distributed else set())
        if set(state_dict) != want:
            raise ValueError(f"state_dict must have the keys {sorted(want)}, got {sorted(state_dict)}")
        if self.cache_loss.distributed and state_dict["shard"] != self._shard():
            raise ValueError(
                f"state_dict['shard'] is {state_dict['shard']}, but this rank is {self._shard()}: "
                "load each rank's own shard"
            )
        cache = _cache_from_state(
            self.cache_manager, state_dict["cache"], self.cache.device, "state_dict['cache']"
        )
        self.cache_loss.load_state_dict(state_dict["loss"])
        self.cache = cache

    def _shard(self) -> Dict[str, int]:
        dist = _dist()
        group = self.cache_loss.group
        return {"rank": int(dist.get_rank(group)), "world_size": int(dist.get_world_size(group))}
