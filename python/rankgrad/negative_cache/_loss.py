"""The cache classification loss: softmax cross-entropy against the cache, trained by sampling."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Dict, Mapping, NamedTuple, Optional, Sequence, Tuple

import torch
from torch import Tensor

from .._inputs import check_reduction
from ._cache import NegativeCache, _check_cache, _check_dense, _check_int, matching_slots
from ._distributed import refuse_step, retrieve_sharded
from ._sampling import Retrieval, gumbel_sample, no_retrieval

if TYPE_CHECKING:
    from torch.distributed import ProcessGroup

__all__ = ["CacheClassificationLoss", "CacheLossReturn", "DocNetwork"]

DocNetwork = Callable[[Dict[str, Tensor]], Tensor]


class CacheLossReturn(NamedTuple):
    """What `CacheClassificationLoss` returns.

    training_loss:     differentiate this; `(1 - p)(s_neg - s_pos)`, reduced
    interpretable_loss: `-log p`, the cross-entropy over the positive and the cache, reduced
    staleness:         `||e_cached - e_fresh||^2 / ||e_fresh||^2` of the sampled documents, reduced
    updated_item_indices: [B] int64 slots sampled ([0] when nothing could be sampled); with
                       `distributed=True`, global indices `owner_rank * cache_size + slot`.
                       A query with `exclude_keys` whose every filled slot is excluded has
                       p = 1 (its losses are 0); its row holds one of those slots (a copy of
                       its positive), re-embedded and refreshed like any other
    updated_item_data: {embedding_key: [B, D]} their fresh embeddings (detached)
    """

    training_loss: Tensor
    interpretable_loss: Tensor
    staleness: Tensor
    updated_item_indices: Tensor
    updated_item_data: Dict[str, Tensor]


class CacheClassificationLoss:
    """Softmax cross-entropy of the positive against the cache, trained by sampling.

    With `t` = score_transform (identity by default), `s_pos = t(<q, d_pos>)` (or the
    `positive_logits` given to the call) and `s_j = t(<q, e_j>)` over the query's candidate
    slots S_i (the filled ones, less its excluded ones; the `top_k` best of those when set),
    one slot J per query is drawn from softmax(s) over S_i by Gumbel-max and its document
    re-embedded by `doc_network`, giving `s_neg`. With
    `p = exp(s_pos) / (exp(s_pos) + sum_{j in S_i} exp(s_j))` held constant:

        training_loss     = (1 - p) (s_neg - s_pos)
        interpretable_loss = -log p
        staleness         = ||e_J - doc_network(x_J)||^2 / ||doc_network(x_J)||^2

    E_J[grad training_loss] is the gradient of -log p when the cache is fresh.

    Excluding the positive's copies (`exclude_keys`): a slot holding the same document as
    query i's positive is a false negative. Drawn, it costs a pass through `doc_network`
    for nothing (`s_neg = s_pos` when fresh, so its term and gradient are 0), and its mass
    in the denominator caps p at 1/2 and biases -log p. With `exclude_keys` set, slot j
    is left out of S_i when `cache[k][j] == pos_doc_data[k][i]` (every value) for every
    field k of `exclude_keys` (e.g. a document id, or the token ids): it is neither drawn
    nor counted in p or `interpretable_loss`, for that query only. (The TensorFlow
    reference compares fields the same way, exactly on every key, in its
    `IsInCacheFilterFn`, which filters insertions rather than draws.) A query whose S_i is
    empty has p = 1: losses 0, no gradient.

    Args:
      embedding_key: the cache field holding the document embeddings `[cache_size, D]`.
      data_keys: the cache fields `doc_network` reads to re-embed a document.
      score_transform: `t`, applied elementwise to dot products (e.g. `lambda s: 20 * s`).
      top_k: sample only among each query's `top_k` best cached documents.
      reduction: "mean" (default), "sum" or "none" (per query, `[B]`) for the three losses.
      generator: the random source of the draws; None uses torch's global one.
      exclude_keys: cache fields (integer or bool) identifying a document, e.g. `("id",)`;
        None (default): nothing is excluded. The call then needs `pos_doc_data` with
        these fields for the positives.
      distributed: the cache is sharded over the ranks of `group`; the sample and p are
        those of the union of the shards. Seed `generator` differently per rank.
      group: the process group, None for the default one.
    """

    def __init__(
        self,
        embedding_key: str,
        data_keys: Sequence[str],
        score_transform: Optional[Callable[[Tensor], Tensor]] = None,
        top_k: Optional[int] = None,
        reduction: str = "mean",
        generator: Optional[torch.Generator] = None,
        *,
        exclude_keys: Optional[Sequence[str]] = None,
        distributed: bool = False,
        group: Optional[ProcessGroup] = None,
    ) -> None:
        if not isinstance(embedding_key, str):
            raise TypeError(f"embedding_key must be a str, got {type(embedding_key).__name__}")
        if isinstance(data_keys, str) or not all(isinstance(k, str) for k in data_keys):
            raise TypeError("data_keys must be a sequence of str, e.g. ('tokens',)")
        keys = tuple(data_keys)
        if not keys:
            raise ValueError("data_keys must name at least one field doc_network reads")
        if embedding_key in keys:
            raise ValueError(f"data_keys must not contain the embedding_key {embedding_key!r}")
        if score_transform is not None and not callable(score_transform):
            raise TypeError("score_transform must be callable or None")
        if top_k is not None:
            _check_int(top_k, "top_k")
        check_reduction(reduction)
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
        excl: Optional[Tuple[str, ...]] = None
        if exclude_keys is not None:
            if isinstance(exclude_keys, str) or not all(isinstance(k, str) for k in exclude_keys):
                raise TypeError("exclude_keys must be None or a sequence of str, e.g. ('id',)")
            excl = tuple(exclude_keys)
            if not excl:
                raise ValueError("exclude_keys must name at least one field (or be None)")
            if embedding_key in excl:
                raise ValueError(
                    f"exclude_keys must not contain the embedding_key {embedding_key!r}: slots are "
                    "matched exactly, on a document id or its tokens"
                )
        self.embedding_key = embedding_key
        self.data_keys = keys
        self.score_transform = score_transform
        self.top_k = top_k
        self.reduction = reduction
        self.generator = generator
        self.exclude_keys = excl
        self.distributed = bool(distributed)
        self.group = group

    def state_dict(self) -> Dict[str, Tensor]:
        """The state a resumed run needs: {"generator": uint8 Tensor} when `generator` is
        set (its `get_state()`), else {} (the global RNG is the caller's to save)."""
        return {} if self.generator is None else {"generator": self.generator.get_state()}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restores the generator state saved by `state_dict`; nothing changes if refused.

        Args:
          state_dict: {"generator": uint8 Tensor} when this loss has a generator, else {}.
        """
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"state_dict must be a dict, got {type(state_dict).__name__}")
        want = set() if self.generator is None else {"generator"}
        if set(state_dict) != want:
            raise ValueError(
                f"state_dict must have the keys {sorted(want)} (this loss "
                f"{'has no' if self.generator is None else 'has a'} generator), got {sorted(state_dict)}"
            )
        if self.generator is None:
            return
        st = state_dict["generator"]
        if not isinstance(st, Tensor) or st.dtype != torch.uint8 or st.dim() != 1:
            raise ValueError("state_dict['generator'] must be a 1-D uint8 tensor from Generator.get_state()")
        st = st.cpu()
        try:  # a scratch generator of the same kind refuses a state of another kind
            torch.Generator(self.generator.device).set_state(st)
        except RuntimeError as err:
            raise ValueError(
                f"state_dict['generator'] does not fit generator on {self.generator.device}: {err}"
            ) from None
        self.generator.set_state(st)

    def _t(self, s: Tensor) -> Tensor:
        return s if self.score_transform is None else self.score_transform(s)

    def _check_inputs(
        self,
        doc_network: DocNetwork,
        q: Tensor,
        pos: Optional[Tensor],
        cache: NegativeCache,
        positive_logits: Optional[Tensor],
        pos_doc_data: Any,
    ) -> Tuple[torch.dtype, Optional[Dict[str, Tensor]]]:
        """(the dtype the losses are computed in, the positives' exclude_keys fields or None)."""
        if not callable(doc_network):
            raise TypeError("doc_network must be callable: {data_key: Tensor[B, ...]} -> Tensor[B, D]")
        _check_cache(cache)
        fields = [(self.embedding_key, "embedding_key")] + [(k, "data_keys") for k in self.data_keys]
        fields += [(k, "exclude_keys") for k in self.exclude_keys or ()]
        for key, what in fields:
            if key not in cache.data:
                raise ValueError(f"cache has no field {key!r} ({what}); it has {sorted(cache.data)}")
        emb = cache.data[self.embedding_key]
        if emb.dim() != 2 or not emb.dtype.is_floating_point:
            raise ValueError(
                f"cache field {self.embedding_key!r} must hold float vectors [cache_size, D], "
                f"got {tuple(emb.shape)} {emb.dtype}"
            )
        if pos is None and positive_logits is None:
            raise TypeError("pos_doc_embeddings must be a tensor (it may be None only with positive_logits)")
        for name, x in (("query_embeddings", q), ("pos_doc_embeddings", pos)):
            if x is None:
                continue
            _check_dense(x, name)
            if not x.dtype.is_floating_point:
                raise TypeError(f"{name} must be floating-point, got {x.dtype}")
            if x.dim() != 2 or x.shape[1] != emb.shape[1]:
                raise ValueError(
                    f"{name} has shape {tuple(x.shape)}, expected [B, {emb.shape[1]}] like the cache"
                )
            if x.device != cache.device:
                raise ValueError(f"{name} is on {x.device} but the cache is on {cache.device}")
        b = q.shape[0]
        if pos is not None and pos.shape[0] != b:
            raise ValueError(f"pos_doc_embeddings has {pos.shape[0]} rows, query_embeddings {b}")
        dtype = torch.promote_types(torch.promote_types(q.dtype, emb.dtype), torch.float32)
        if positive_logits is not None:
            _check_dense(positive_logits, "positive_logits")
            if not positive_logits.dtype.is_floating_point:
                raise TypeError(f"positive_logits must be floating-point, got {positive_logits.dtype}")
            if tuple(positive_logits.shape) != (b,):
                raise ValueError(
                    f"positive_logits has shape {tuple(positive_logits.shape)}, expected [B] = ({b},)"
                )
            if positive_logits.device != cache.device:
                raise ValueError(
                    f"positive_logits is on {positive_logits.device} but the cache is on {cache.device}"
                )
            dtype = torch.promote_types(dtype, positive_logits.dtype)
        keys = self._check_pos_doc_data(pos_doc_data, cache, b)
        gen = self.generator
        if gen is not None and gen.device.type != cache.device.type:
            raise ValueError(f"generator is on {gen.device} but the cache is on {cache.device}")
        return dtype, keys

    def _check_pos_doc_data(self, data: Any, cache: NegativeCache, b: int) -> Optional[Dict[str, Tensor]]:
        """The positives' exclude_keys fields `{k: [B, *shape]}` (None without exclude_keys)."""
        if self.exclude_keys is None:
            return None
        if not isinstance(data, Mapping):
            raise TypeError(
                f"pos_doc_data must be a dict {{name: Tensor[B, ...]}} holding the exclude_keys "
                f"{list(self.exclude_keys)} of the positives, got {type(data).__name__}"
            )
        out: Dict[str, Tensor] = {}
        for k in self.exclude_keys:
            field = cache.data[k]
            if field.dtype.is_floating_point or field.is_complex():
                raise TypeError(
                    f"cache field {k!r} (exclude_keys) is {field.dtype}: documents are matched exactly, "
                    "on integer or bool fields (an id, token ids)"
                )
            if k not in data:
                raise ValueError(f"pos_doc_data has no field {k!r} (exclude_keys); it has {sorted(data)}")
            x, name = data[k], f"pos_doc_data[{k!r}]"
            _check_dense(x, name)
            if x.dtype.is_floating_point or x.is_complex():
                raise TypeError(f"{name} must be integer or bool like the cache field, got {x.dtype}")
            want = (b, *field.shape[1:])
            if tuple(x.shape) != want:
                raise ValueError(f"{name} has shape {tuple(x.shape)}, expected {want}")
            if x.device != cache.device:
                raise ValueError(f"{name} is on {x.device} but the cache is on {cache.device}")
            out[k] = x.detach()
        return out

    def _logits(self, q: Tensor, cache: NegativeCache, dtype: torch.dtype, full: bool) -> Tensor:
        """`t(<q_i, e_j>)` `[n, cache_size]`, -inf at empty slots unless `full`."""
        s = self._t(q.to(dtype) @ cache.data[self.embedding_key].to(dtype).T)
        return s if full else s.masked_fill(~cache.filled, float("-inf"))

    def _retrieve(
        self, q: Tensor, cache: NegativeCache, dtype: torch.dtype, keys: Optional[Dict[str, Tensor]]
    ) -> Retrieval:
        emb = cache.data[self.embedding_key]
        if self.distributed:
            return retrieve_sharded(
                q,
                cache,
                lambda queries, full: self._logits(queries, cache, dtype, full),
                self.embedding_key,
                self.data_keys,
                self.top_k,
                self.generator,
                self.group,
                keys,
            )
        filled = int(cache.filled.sum())
        if filled == 0:
            return no_retrieval(q, emb)
        s = self._logits(q, cache, dtype, full=filled == cache.cache_size)
        fallback = None
        if keys is not None:
            # a query whose every filled slot is excluded draws its best one (p = 1: no loss)
            fallback = s.argmax(dim=1)
            s = s.masked_fill(matching_slots(keys, cache.data, cache.filled), float("-inf"))
        cand = None
        if self.top_k is not None:
            s, cand = s.topk(min(self.top_k, cache.cache_size), dim=1)
        j, lse = gumbel_sample(s, self.generator)
        slots = j if cand is None else cand.gather(1, j[:, None])[:, 0]
        if fallback is not None:
            slots = torch.where(torch.isneginf(lse), fallback, slots)
        data = {k: cache.data[k][slots] for k in self.data_keys}
        return Retrieval(lse, slots, data, emb[slots], True)

    def _reduce(self, x: Tensor) -> Tensor:
        if self.reduction == "none":
            return x
        if self.reduction == "sum":
            return x.sum()
        return x.sum() / max(x.shape[0], 1)

    def __call__(
        self,
        doc_network: DocNetwork,
        query_embeddings: Tensor,
        pos_doc_embeddings: Optional[Tensor],
        cache: NegativeCache,
        *,
        positive_logits: Optional[Tensor] = None,
        pos_doc_data: Optional[Mapping[str, Tensor]] = None,
    ) -> CacheLossReturn:
        """One step's loss against `cache` (which it does not change).

        Args:
          doc_network: `{data_key: Tensor[B, ...]} -> Tensor[B, D]`, the document tower.
          query_embeddings: [B, D] float, differentiable.
          pos_doc_embeddings: [B, D] float, the positives' embeddings, differentiable; may
            be None when `positive_logits` is given (it is not read then).
          cache: the `NegativeCache` (with `distributed=True`, this rank's shard).
          positive_logits: [B] float, differentiable: the positive class's logit `s_pos`
            itself, in place of `t(<q_i, d_pos_i>)` (e.g. a log-sum-exp over several
            positives or in-batch candidates, which then compete with the cache as one
            class); `score_transform` is not applied to it. Default: `t(<q, d_pos>)`.
          pos_doc_data: {name: Tensor[B, *shape]} holding the `exclude_keys` fields of the
            positives (other fields are ignored); needed, and read, only with `exclude_keys`.

        Returns:
          `CacheLossReturn`; the losses are scalars (or `[B]` with reduction="none") in
          the promoted dtype of the queries and the cache, at least float32. With no filled
          slot the losses are 0 and `updated_item_indices` is empty.
        """
        try:
            dtype, keys = self._check_inputs(
                doc_network, query_embeddings, pos_doc_embeddings, cache, positive_logits, pos_doc_data
            )
        except (TypeError, ValueError):
            if self.distributed and isinstance(cache, NegativeCache):
                refuse_step(cache, self.group)  # the other ranks raise too, rather than wait
            raise
        q = query_embeddings.to(dtype)
        if positive_logits is not None:
            s_pos = positive_logits.to(dtype)
        else:
            assert pos_doc_embeddings is not None
            s_pos = self._t((q * pos_doc_embeddings.to(dtype)).sum(dim=1))
        with torch.no_grad():
            r = self._retrieve(q.detach(), cache, dtype, keys)

        if not r.valid:
            zeros = s_pos.detach() * 0.0
            return CacheLossReturn(
                training_loss=self._reduce(s_pos * 0.0),
                interpretable_loss=self._reduce(zeros),
                staleness=self._reduce(zeros),
                updated_item_indices=r.slots,
                updated_item_data={self.embedding_key: q.new_empty(0, q.shape[1]).detach()},
            )

        fresh = doc_network(r.data)
        if not isinstance(fresh, Tensor) or tuple(fresh.shape) != tuple(q.shape):
            got = tuple(fresh.shape) if isinstance(fresh, Tensor) else type(fresh).__name__
            raise ValueError(f"doc_network returned {got}, expected embeddings of shape {tuple(q.shape)}")
        fresh = fresh.to(dtype)
        s_neg = self._t((q * fresh).sum(dim=1))

        s_pos_c = s_pos.detach()
        log_p = s_pos_c - torch.logaddexp(s_pos_c, r.lse)
        p = log_p.exp()
        training = (1.0 - p) * (s_neg - s_pos)
        f = fresh.detach()
        err = (r.cached.to(dtype) - f).pow(2).sum(dim=1)
        staleness = err / f.pow(2).sum(dim=1).clamp_min(torch.finfo(dtype).tiny)
        return CacheLossReturn(
            training_loss=self._reduce(training),
            interpretable_loss=self._reduce(-log_p),
            staleness=self._reduce(staleness),
            updated_item_indices=r.slots,
            updated_item_data={self.embedding_key: f},
        )
