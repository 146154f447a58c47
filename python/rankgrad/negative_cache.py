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
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple

import torch
from torch import Tensor

from ._inputs import check_reduction

__all__ = [
    "CacheClassificationLoss",
    "CacheLossHandler",
    "CacheLossReturn",
    "CacheManager",
    "NegativeCache",
    "route_updates_to_owners",
]

Spec = Tuple[Tuple[int, ...], torch.dtype]
DocNetwork = Callable[[Dict[str, Tensor]], Tensor]


@dataclass
class NegativeCache:
    """A cache of `cache_size` slots.

    data:   {name: Tensor[cache_size, *shape]}
    age:    Tensor[cache_size] int64, updates since the slot was written (or refreshed, with LRU)
    filled: Tensor[cache_size] bool, False for a slot never written (never sampled)
    """

    data: Dict[str, Tensor]
    age: Tensor
    filled: Tensor

    @property
    def cache_size(self) -> int:
        return int(self.age.shape[0])

    @property
    def device(self) -> torch.device:
        return self.age.device

    def clone(self) -> NegativeCache:
        return NegativeCache(
            {k: v.clone() for k, v in self.data.items()}, self.age.clone(), self.filled.clone()
        )


class CacheLossReturn(NamedTuple):
    """What `CacheClassificationLoss` returns.

    training_loss:     differentiate this; `(1 - p)(s_neg - s_pos)`, reduced
    interpretable_loss: `-log p`, the cross-entropy over the positive and the cache, reduced
    staleness:         `||e_cached - e_fresh||^2 / ||e_fresh||^2` of the sampled documents, reduced
    updated_item_indices: [B] int64 slots sampled ([0] when nothing could be sampled); with
                       `distributed=True`, global indices `owner_rank * cache_size + slot`
    updated_item_data: {embedding_key: [B, D]} their fresh embeddings (detached)
    """

    training_loss: Tensor
    interpretable_loss: Tensor
    staleness: Tensor
    updated_item_indices: Tensor
    updated_item_data: Dict[str, Tensor]


# ---------------------------------------------------------------------------------------
# Checks


def _check_int(value, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def _check_specs(specs) -> Dict[str, Spec]:
    if not isinstance(specs, Mapping) or not specs:
        raise TypeError("specs must be a non-empty dict {name: (shape, dtype)}")
    out: Dict[str, Spec] = {}
    for name, spec in specs.items():
        if not isinstance(name, str):
            raise TypeError(f"specs keys must be str, got {name!r}")
        try:
            shape, dtype = spec
        except (TypeError, ValueError):
            raise TypeError(f"specs[{name!r}] must be a (shape, dtype) pair, got {spec!r}") from None
        if isinstance(shape, int) and not isinstance(shape, bool):
            shape = (shape,)
        try:
            shape = tuple(int(s) for s in shape)
        except TypeError:
            raise TypeError(f"specs[{name!r}] shape must be a tuple of ints, got {shape!r}") from None
        if any(s < 0 for s in shape):
            raise ValueError(f"specs[{name!r}] shape must not be negative, got {shape}")
        if not isinstance(dtype, torch.dtype):
            raise TypeError(f"specs[{name!r}] dtype must be a torch.dtype, got {dtype!r}")
        out[name] = (shape, dtype)
    return out


def _check_cache(cache, name: str = "cache") -> NegativeCache:
    if not isinstance(cache, NegativeCache):
        raise TypeError(f"{name} must be a NegativeCache, got {type(cache).__name__}")
    return cache


def _is_float(dtype: torch.dtype) -> bool:
    return dtype.is_floating_point


def _check_rows(x, name: str, spec: Spec, cache: NegativeCache, rows: Optional[int]) -> Tensor:
    """`x` as `[n, *shape]` in the spec's dtype on the cache's device, detached."""
    shape, dtype = spec
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.device != cache.device:
        raise ValueError(f"{name} is on {x.device} but the cache is on {cache.device}")
    if x.dim() != 1 + len(shape) or tuple(x.shape[1:]) != shape:
        want = "[n" + "".join(f", {s}" for s in shape) + "]"
        raise ValueError(f"{name} has shape {tuple(x.shape)}, expected {want}")
    if rows is not None and x.shape[0] != rows:
        raise ValueError(f"{name} has {x.shape[0]} rows, expected {rows} like the other items")
    if x.is_complex() or _is_float(x.dtype) != _is_float(dtype):
        kind = "floating-point" if _is_float(dtype) else "integer or bool"
        raise TypeError(f"{name} must be {kind} like its spec ({dtype}), got {x.dtype}")
    return x.detach().to(dtype)


def _check_mask(mask, name: str, n: int, device: torch.device) -> Optional[Tensor]:
    if mask is None:
        return None
    if not isinstance(mask, Tensor) or mask.dtype != torch.bool:
        raise TypeError(f"{name} must be a bool torch.Tensor")
    if tuple(mask.shape) != (n,):
        raise ValueError(f"{name} has shape {tuple(mask.shape)}, expected ({n},)")
    if mask.device != device:
        raise ValueError(f"{name} is on {mask.device} but the cache is on {device}")
    return mask


def _last_occurrences(idx: Tensor) -> Tensor:
    """Positions that hold the last occurrence of each distinct value of `idx`, ascending by value."""
    sorted_idx, perm = torch.sort(idx, stable=True)
    last = torch.ones_like(sorted_idx, dtype=torch.bool)
    last[:-1] = sorted_idx[1:] != sorted_idx[:-1]
    return perm[last]


# ---------------------------------------------------------------------------------------
# The cache


class CacheManager:
    """Creates and updates a `NegativeCache` of `cache_size` slots laid out by `specs`.

    specs: {name: (shape, dtype)}, one entry per stored field, e.g. the document's tokens
    and its embedding. With `use_lru`, refreshing a slot's data makes it the youngest.
    """

    def __init__(self, specs: Mapping[str, Spec], cache_size: int, use_lru: bool = True):
        self.specs = _check_specs(specs)
        self.cache_size = _check_int(cache_size, "cache_size")
        self.use_lru = bool(use_lru)

    def init_cache(self, device="cpu") -> NegativeCache:
        """Every slot empty, zero data, age 0; the cache lives on `device` from now on."""
        device = torch.device(device)
        c = self.cache_size
        data = {
            k: torch.zeros((c, *shape), dtype=dtype, device=device)
            for k, (shape, dtype) in self.specs.items()
        }
        age = torch.zeros(c, dtype=torch.int64, device=device)
        return NegativeCache(data, age, torch.zeros(c, dtype=torch.bool, device=device))

    def _check_layout(self, cache: NegativeCache) -> None:
        if set(cache.data) != set(self.specs):
            raise ValueError(f"cache has fields {sorted(cache.data)}, specs has {sorted(self.specs)}")
        if cache.cache_size != self.cache_size:
            raise ValueError(f"cache has {cache.cache_size} slots, expected cache_size={self.cache_size}")

    def update_cache(
        self,
        cache: NegativeCache,
        new_items: Optional[Mapping[str, Tensor]] = None,
        updated_item_indices: Optional[Tensor] = None,
        updated_item_data: Optional[Mapping[str, Tensor]] = None,
        *,
        new_items_mask: Optional[Tensor] = None,
        updated_item_mask: Optional[Tensor] = None,
        inplace: bool = False,
    ) -> NegativeCache:
        """Refreshes, then inserts, then ages; returns the new cache.

        1. `updated_item_data[k][i]` goes into slot `updated_item_indices[i]` (with use_lru
           that slot becomes the youngest). The last write to a slot wins; refreshes of
           empty slots and rows where `updated_item_mask` is False are dropped.
        2. `new_items` (every spec field, `[n, *shape]`, rows where `new_items_mask` is
           True) go into the n oldest slots, ties to the lowest index, item i into the
           i-th oldest; they become filled and the youngest.
        3. Every slot ages by one.
        With `inplace=True` the cache's tensors are updated in place and it is returned.
        """
        _check_cache(cache)
        self._check_layout(cache)
        refresh = None
        if updated_item_indices is not None or updated_item_data is not None:
            refresh = self._check_refresh(cache, updated_item_indices, updated_item_data, updated_item_mask)
        insert = None
        if new_items is not None:
            insert = self._check_new_items(cache, new_items, new_items_mask)

        if not inplace:
            cache = cache.clone()
        data, age, filled = cache.data, cache.age, cache.filled
        if refresh is not None:
            idx, values = refresh
            for k, v in values.items():
                data[k].index_copy_(0, idx, v)
            if self.use_lru:
                age.index_fill_(0, idx, -1)
        if insert is not None and next(iter(insert.values())).shape[0] > 0:
            n = next(iter(insert.values())).shape[0]
            c = self.cache_size
            # Oldest first, ties to the lowest index: the largest keys age * c - index.
            slots = (age * c - torch.arange(c, device=age.device)).topk(n).indices
            for k, v in insert.items():
                data[k].index_copy_(0, slots, v)
            filled.index_fill_(0, slots, True)
            age.index_fill_(0, slots, -1)
        age.add_(1)
        return cache

    def _check_refresh(self, cache, indices, values, mask) -> Tuple[Tensor, Dict[str, Tensor]]:
        if indices is None or values is None:
            raise ValueError("updated_item_indices and updated_item_data must be given together")
        if not isinstance(indices, Tensor):
            raise TypeError(f"updated_item_indices must be a torch.Tensor, got {type(indices).__name__}")
        if indices.dtype.is_floating_point or indices.is_complex() or indices.dtype == torch.bool:
            raise TypeError(f"updated_item_indices must be an integer tensor, got {indices.dtype}")
        if indices.dim() != 1:
            raise ValueError(f"updated_item_indices must be 1-D [m], got shape {tuple(indices.shape)}")
        if indices.device != cache.device:
            raise ValueError(
                f"updated_item_indices is on {indices.device} but the cache is on {cache.device}"
            )
        if not isinstance(values, Mapping):
            raise TypeError("updated_item_data must be a dict {name: Tensor[m, *shape]}")
        extra = set(values) - set(self.specs)
        if extra:
            raise ValueError(f"updated_item_data has fields {sorted(extra)} that are not in specs")
        m = indices.shape[0]
        vals = {
            k: _check_rows(v, f"updated_item_data[{k!r}]", self.specs[k], cache, m) for k, v in values.items()
        }
        mask = _check_mask(mask, "updated_item_mask", m, cache.device)
        idx = indices.to(torch.int64)
        if m and bool(((idx < 0) | (idx >= self.cache_size)).any()):
            raise ValueError(f"updated_item_indices must lie in [0, {self.cache_size})")
        keep = cache.filled[idx] if m else torch.zeros(0, dtype=torch.bool, device=cache.device)
        if mask is not None:
            keep = keep & mask
        rows = keep.nonzero().flatten()
        rows = rows[_last_occurrences(idx[rows])]
        return idx[rows], {k: v[rows] for k, v in vals.items()}

    def _check_new_items(self, cache, items, mask) -> Dict[str, Tensor]:
        if not isinstance(items, Mapping):
            raise TypeError("new_items must be a dict {name: Tensor[n, *shape]}")
        if set(items) != set(self.specs):
            missing, extra = set(self.specs) - set(items), set(items) - set(self.specs)
            raise ValueError(
                f"new_items must have exactly the spec fields {sorted(self.specs)}"
                + (f"; missing {sorted(missing)}" if missing else "")
                + (f"; unknown {sorted(extra)}" if extra else "")
            )
        out: Dict[str, Tensor] = {}
        n = None
        for k in self.specs:
            out[k] = _check_rows(items[k], f"new_items[{k!r}]", self.specs[k], cache, n)
            n = out[k].shape[0]
        mask = _check_mask(mask, "new_items_mask", n, cache.device)
        if mask is not None:
            out = {k: v[mask] for k, v in out.items()}
            n = next(iter(out.values())).shape[0]
        if n > self.cache_size:
            raise ValueError(f"new_items has {n} items, more than cache_size={self.cache_size}")
        return out


# ---------------------------------------------------------------------------------------
# Sampling


# Rows longer than this are sampled in two Gumbel-max stages (blocks, then within a block).
_FLAT_SAMPLE_MAX = 1024


def _race(weights: Tensor, generator: Optional[torch.Generator]) -> Tensor:
    """Gumbel-max on log-weights: `argmax_j (log w_j + G_j)`, `G_j = -log(-log U_j)`, computed
    as `argmax_j w_j / (-log U_j)`, the exponential of the same quantity. w_j = 0 is never drawn."""
    u = torch.rand(weights.shape, generator=generator, device=weights.device, dtype=weights.dtype)
    return (weights / u.log_().neg_()).max(dim=1).indices  # U = 0 gives -log U = inf: weight 0


def _gumbel_sample(logits: Tensor, generator: Optional[torch.Generator]) -> Tuple[Tensor, Tensor]:
    """Per row, an index drawn from softmax(logits) by Gumbel-max, and logsumexp(logits).

    A row of K > _FLAT_SAMPLE_MAX logits is cut into about sqrt(K) blocks: Gumbel-max over
    the blocks' total weights picks a block, a second Gumbel-max picks within it, so
    P(j) = (W_block / W) (w_j / W_block) = softmax(logits)_j exactly, from 2 sqrt(K)
    uniforms instead of K (the same construction as the sharded cache's two draws).
    -inf logits are never drawn; a row of -inf has logsumexp -inf.
    """
    b, k = logits.shape
    m = logits.amax(dim=1, keepdim=True)
    m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
    w = (logits - m).exp_()
    if k <= _FLAT_SAMPLE_MAX:
        return _race(w, generator), w.sum(dim=1).log_() + m[:, 0]
    size = math.ceil(math.sqrt(k))
    blocks = -(-k // size)
    if blocks * size != k:
        w = torch.nn.functional.pad(w, (0, blocks * size - k))
    w = w.view(b, blocks, size)
    mass = w.sum(dim=2)
    block = _race(mass, generator)
    inner = _race(w[torch.arange(b, device=w.device), block], generator)
    return block * size + inner, mass.sum(dim=1).log_() + m[:, 0]


class _Retrieval(NamedTuple):
    lse: Tensor  # [B] log-sum-exp of the cache's logits (over the top k when set)
    slots: Tensor  # [B] int64 sampled slot (global index when sharded)
    data: Dict[str, Tensor]  # {data_key: [B, ...]} the sampled documents
    cached: Tensor  # [B, D] their cached embeddings
    valid: bool  # False when no slot could be sampled


def _dist():
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        raise RuntimeError("distributed=True needs torch.distributed to be initialized")
    return dist


def _all_gather(t: Tensor, group) -> List[Tensor]:
    dist = _dist()
    out = [torch.empty_like(t) for _ in range(dist.get_world_size(group))]
    dist.all_gather(out, t.contiguous(), group=group)
    return out


def _all_to_all(t: Tensor, group) -> Tensor:
    """Row block r of `t` goes to rank r; block r of the result came from rank r."""
    dist = _dist()
    send = t.to(torch.uint8) if t.dtype == torch.bool else t.contiguous()
    recv = torch.empty_like(send)
    dist.all_to_all_single(recv, send, group=group)
    return recv.to(torch.bool) if t.dtype == torch.bool else recv


# ---------------------------------------------------------------------------------------
# The loss


class CacheClassificationLoss:
    """Softmax cross-entropy of the positive against the cache, trained by sampling.

    With `t` = score_transform (identity by default), `s_pos = t(<q, d_pos>)` and
    `s_j = t(<q, e_j>)` over the filled cached embeddings (the `top_k` best per query
    when set), one slot J per query is drawn from softmax(s) by Gumbel-max and its
    document re-embedded by `doc_network`, giving `s_neg`. With `p = softmax([s_pos, s])[0]`
    held constant:

        training_loss     = (1 - p) (s_neg - s_pos)
        interpretable_loss = -log p
        staleness         = ||e_J - doc_network(x_J)||^2 / ||doc_network(x_J)||^2

    E_J[grad training_loss] is the gradient of -log p when the cache is fresh.
    `distributed=True`: the cache is sharded over the ranks of `group`, and the sample
    and p are those of the union of the shards. Seed `generator` differently per rank.
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
        distributed: bool = False,
        group=None,
    ):
        if not isinstance(embedding_key, str):
            raise TypeError(f"embedding_key must be a str, got {type(embedding_key).__name__}")
        if isinstance(data_keys, str) or not all(isinstance(k, str) for k in data_keys):
            raise TypeError("data_keys must be a sequence of str, e.g. ('tokens',)")
        data_keys = tuple(data_keys)
        if not data_keys:
            raise ValueError("data_keys must name at least one field doc_network reads")
        if embedding_key in data_keys:
            raise ValueError(f"data_keys must not contain the embedding_key {embedding_key!r}")
        if score_transform is not None and not callable(score_transform):
            raise TypeError("score_transform must be callable or None")
        if top_k is not None:
            _check_int(top_k, "top_k")
        check_reduction(reduction)
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
        self.embedding_key = embedding_key
        self.data_keys = data_keys
        self.score_transform = score_transform
        self.top_k = top_k
        self.reduction = reduction
        self.generator = generator
        self.distributed = bool(distributed)
        self.group = group

    # -- scoring ------------------------------------------------------------------------

    def _t(self, s: Tensor) -> Tensor:
        return s if self.score_transform is None else self.score_transform(s)

    def _check_inputs(self, doc_network, q, pos, cache) -> torch.dtype:
        if not callable(doc_network):
            raise TypeError("doc_network must be callable: {data_key: Tensor[B, ...]} -> Tensor[B, D]")
        _check_cache(cache)
        for key, what in [(self.embedding_key, "embedding_key")] + [(k, "data_keys") for k in self.data_keys]:
            if key not in cache.data:
                raise ValueError(f"cache has no field {key!r} ({what}); it has {sorted(cache.data)}")
        emb = cache.data[self.embedding_key]
        if emb.dim() != 2 or not emb.dtype.is_floating_point:
            raise ValueError(
                f"cache field {self.embedding_key!r} must hold float vectors [cache_size, D], "
                f"got {tuple(emb.shape)} {emb.dtype}"
            )
        for name, x in (("query_embeddings", q), ("pos_doc_embeddings", pos)):
            if not isinstance(x, Tensor):
                raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
            if not x.dtype.is_floating_point:
                raise TypeError(f"{name} must be floating-point, got {x.dtype}")
            if x.dim() != 2 or x.shape[1] != emb.shape[1]:
                raise ValueError(
                    f"{name} has shape {tuple(x.shape)}, expected [B, {emb.shape[1]}] like the cache"
                )
            if x.device != cache.device:
                raise ValueError(f"{name} is on {x.device} but the cache is on {cache.device}")
        if pos.shape[0] != q.shape[0]:
            raise ValueError(f"pos_doc_embeddings has {pos.shape[0]} rows, query_embeddings {q.shape[0]}")
        gen = self.generator
        if gen is not None and gen.device.type != cache.device.type:
            raise ValueError(f"generator is on {gen.device} but the cache is on {cache.device}")
        return torch.promote_types(torch.promote_types(q.dtype, emb.dtype), torch.float32)

    # -- retrieval ----------------------------------------------------------------------

    def _cache_logits(self, q: Tensor, cache: NegativeCache, dtype, full: bool) -> Tensor:
        s = self._t(q.to(dtype) @ cache.data[self.embedding_key].to(dtype).T)
        return s if full else s.masked_fill(~cache.filled, float("-inf"))

    def _retrieve(self, q: Tensor, cache: NegativeCache, dtype) -> _Retrieval:
        emb = cache.data[self.embedding_key]
        filled = int(cache.filled.sum())
        if filled == 0:
            return _Retrieval(q.new_empty(0), q.new_empty(0, dtype=torch.int64), {}, emb[:0], False)
        s = self._cache_logits(q, cache, dtype, full=filled == cache.cache_size)
        cand = None
        if self.top_k is not None:
            s, cand = s.topk(min(self.top_k, cache.cache_size), dim=1)
        j, lse = _gumbel_sample(s, self.generator)
        slots = j if cand is None else cand.gather(1, j[:, None])[:, 0]
        data = {k: cache.data[k][slots] for k in self.data_keys}
        return _Retrieval(lse, slots, data, emb[slots], True)

    def _retrieve_sharded(self, q: Tensor, cache: NegativeCache, dtype) -> _Retrieval:
        dist, group = _dist(), self.group
        world, rank = dist.get_world_size(group), dist.get_rank(group)
        b, c, dev = q.shape[0], cache.cache_size, cache.device
        meta = torch.stack(_all_gather(torch.tensor([b, c], device=dev), group)).cpu()
        if bool((meta[:, 1] != c).any()):
            raise ValueError(
                f"cache: every rank's shard must have the same cache_size, got {meta[:, 1].tolist()}"
            )
        bmax = int(meta[:, 0].max())
        emb = cache.data[self.embedding_key]
        if bmax == 0:
            return _Retrieval(q.new_empty(0), q.new_empty(0, dtype=torch.int64), {}, emb[:0], False)
        q_pad = q.new_zeros(bmax, q.shape[1])
        q_pad[:b] = q
        queries = torch.cat(_all_gather(q_pad, group))  # [world * bmax, D], rank r's queries in block r

        s = self._cache_logits(queries, cache, dtype, full=bool(cache.filled.all()))
        cand = None
        if self.top_k is not None:
            # Exact top-k over the union: the global top k lie among the shards' local top k.
            k_local = min(self.top_k, c)
            s, cand = s.topk(k_local, dim=1)
            every = torch.cat(_all_gather(s, group), dim=1)  # [world * bmax, world * k_local]
            winners = every.topk(min(self.top_k, world * k_local), dim=1).indices
            mine = (winners // k_local == rank).sum(dim=1)
            keep = torch.arange(k_local, device=dev)[None, :] < mine[:, None]
            s = s.masked_fill(~keep, float("-inf"))
        j, lse = _gumbel_sample(s, self.generator)
        slots = j if cand is None else cand.gather(1, j[:, None])[:, 0]

        # Each shard's local sample and log-sum-exp travel back to the rank of the query.
        lse_w = _all_to_all(lse, group).view(world, bmax)[:, :b].T  # [b, world]
        slot_w = _all_to_all(slots, group).view(world, bmax)
        cached_w = _all_to_all(emb[slots], group).view(world, bmax, -1)
        data_w = {
            k: _all_to_all(cache.data[k][slots], group).view(world, bmax, *cache.data[k].shape[1:])
            for k in self.data_keys
        }
        if b == 0 or not bool(torch.isfinite(lse_w).any()):
            return _Retrieval(q.new_empty(0), q.new_empty(0, dtype=torch.int64), {}, emb[:0], False)
        shard, lse = _gumbel_sample(lse_w, self.generator)  # a second Gumbel draw over the shards
        row = torch.arange(b, device=dev)
        data = {k: v[shard, row] for k, v in data_w.items()}
        return _Retrieval(lse, shard * c + slot_w[shard, row], data, cached_w[shard, row], True)

    # -- the loss -----------------------------------------------------------------------

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
        pos_doc_embeddings: Tensor,
        cache: NegativeCache,
    ) -> CacheLossReturn:
        dtype = self._check_inputs(doc_network, query_embeddings, pos_doc_embeddings, cache)
        q = query_embeddings.to(dtype)
        s_pos = self._t((q * pos_doc_embeddings.to(dtype)).sum(dim=1))
        with torch.no_grad():
            retrieve = self._retrieve_sharded if self.distributed else self._retrieve
            r = retrieve(q.detach(), cache, dtype)

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


# ---------------------------------------------------------------------------------------
# Sharded refreshes and the handler


def route_updates_to_owners(
    updated_item_indices: Tensor,
    updated_item_data: Mapping[str, Tensor],
    cache_size: int,
    group=None,
) -> Tuple[Tensor, Dict[str, Tensor]]:
    """Collective: every rank's global indices `owner * cache_size + slot` and data, returned
    to the owning rank as its local slots (in rank order, so the last write wins consistently)."""
    dist = _dist()
    rank = dist.get_rank(group)
    idx = updated_item_indices
    n = torch.tensor([idx.shape[0]], device=idx.device)
    nmax = int(torch.stack(_all_gather(n, group)).max())
    if nmax == 0:
        return idx[:0], {k: v[:0] for k, v in updated_item_data.items()}
    pad = torch.full((nmax,), -1, dtype=torch.int64, device=idx.device)
    pad[: idx.shape[0]] = idx
    every = torch.cat(_all_gather(pad, group))
    mine = (every >= 0) & (every // cache_size == rank)
    out = {}
    for k in sorted(updated_item_data):
        v = updated_item_data[k]
        vp = v.new_zeros((nmax, *v.shape[1:]))
        vp[: v.shape[0]] = v
        out[k] = torch.cat(_all_gather(vp, group))[mine]
    return every[mine] - rank * cache_size, out


class CacheLossHandler:
    """Owns `handler.cache`; each call is one training step's cache work.

    Computes `cache_loss(doc_network, q, d_pos, cache)`, writes the refreshed embeddings
    back (to the owning rank when the loss is distributed), and enqueues the batch's
    positives, `pos_doc_data` plus their detached embeddings, into this rank's cache.
    Returns the loss's `CacheLossReturn`; differentiate its `training_loss`.
    """

    def __init__(self, cache_manager: CacheManager, cache_loss: CacheClassificationLoss, *, device="cpu"):
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
