"""The cache sharded over the ranks of torch.distributed: sampling and routing refreshes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from torch import Tensor

from ._cache import NegativeCache, matching_slots
from ._sampling import Retrieval, gumbel_sample, no_retrieval

if TYPE_CHECKING:
    from torch.distributed import ProcessGroup

__all__ = ["route_updates_to_owners"]


def _dist() -> Any:
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        raise RuntimeError("distributed=True needs torch.distributed to be initialized")
    return dist


def _all_gather(t: Tensor, group: Optional[ProcessGroup]) -> List[Tensor]:
    dist = _dist()
    out = [torch.empty_like(t) for _ in range(dist.get_world_size(group))]
    dist.all_gather(out, t.contiguous(), group=group)
    return out


def _all_to_all(t: Tensor, group: Optional[ProcessGroup]) -> Tensor:
    """Row block r of `t` goes to rank r; block r of the result came from rank r."""
    dist = _dist()
    send = t.to(torch.uint8) if t.dtype == torch.bool else t.contiguous()
    recv = torch.empty_like(send)
    dist.all_to_all_single(recv, send, group=group)
    return recv.to(torch.bool) if t.dtype == torch.bool else recv


def _exchange_meta(b: int, ok: bool, cache: NegativeCache, group: Optional[ProcessGroup]) -> Tensor:
    """Collective, the first of every sharded step: each rank's [batch, cache_size, ok]."""
    mine = torch.tensor([b, cache.cache_size, int(ok)], device=cache.device)
    return torch.stack(_all_gather(mine, group)).cpu()


def refuse_step(cache: NegativeCache, group: Optional[ProcessGroup]) -> None:
    """Collective: a rank whose inputs were refused still takes part in the step's first
    exchange, so the other ranks raise ValueError too instead of waiting for it."""
    _exchange_meta(0, False, cache, group)


def retrieve_sharded(
    q: Tensor,
    cache: NegativeCache,
    logits: Callable[[Tensor, bool], Tensor],
    embedding_key: str,
    data_keys: Sequence[str],
    top_k: Optional[int],
    generator: Optional[torch.Generator],
    group: Optional[ProcessGroup],
    exclude: Optional[Mapping[str, Tensor]] = None,
) -> Retrieval:
    """Collective: one slot per query of this rank, drawn from the softmax over every shard.

    Every rank's queries are scored against every shard; each shard draws locally and
    reports its log-sum-exp, and a second Gumbel draw over the shards picks the winner, so
    P(slot) = softmax over the union. `logits(queries, full)` gives `[n, cache_size]` scores
    with empty slots at -inf (`full`: every slot is filled). Slots are global,
    `owner_rank * cache_size + slot`.

    `exclude` ({field: [b, *shape]}, the queries' positives): travels with the queries, and
    each shard masks, per query, its slots equal to that query's positive on every field
    before its top k and its draw. A query with no slot left on any shard (every filled slot
    excluded) gets lse = -inf and, from a shard drawn by its unmasked log-sum-exp, that
    shard's best-scoring filled slot.
    """
    dist = _dist()
    world, rank = dist.get_world_size(group), dist.get_rank(group)
    b, c, dev = q.shape[0], cache.cache_size, cache.device
    meta = _exchange_meta(b, True, cache, group)
    refused = (meta[:, 2] == 0).nonzero().flatten().tolist()
    if refused:
        raise ValueError(
            f"the inputs of rank(s) {refused} were refused (see the error there); no rank ran the step"
        )
    if bool((meta[:, 1] != c).any()):
        raise ValueError(
            f"cache: every rank's shard must have the same cache_size, got {meta[:, 1].tolist()}"
        )
    bmax = int(meta[:, 0].max())
    emb = cache.data[embedding_key]
    if bmax == 0:
        return no_retrieval(q, emb)
    q_pad = q.new_zeros(bmax, q.shape[1])
    q_pad[:b] = q
    queries = torch.cat(_all_gather(q_pad, group))  # [world * bmax, D], rank r's queries in block r

    s = logits(queries, bool(cache.filled.all()))
    fallback = lse_full = None
    if exclude is not None:
        keys = {}
        for k in sorted(exclude):
            v = exclude[k]  # int64 on every rank, whatever integer dtype each was given
            pad = torch.zeros((bmax, *v.shape[1:]), dtype=torch.int64, device=dev)
            pad[:b] = v
            keys[k] = torch.cat(_all_gather(pad, group))
        fallback, lse_full = s.argmax(dim=1), torch.logsumexp(s, dim=1)
        s = s.masked_fill(matching_slots(keys, cache.data, cache.filled), float("-inf"))
    cand = None
    if top_k is not None:
        # Exact top-k over the union: the global top k lie among the shards' local top k.
        k_local = min(top_k, c)
        s, cand = s.topk(k_local, dim=1)
        every = torch.cat(_all_gather(s, group), dim=1)  # [world * bmax, world * k_local]
        winners = every.topk(min(top_k, world * k_local), dim=1).indices
        mine = (winners // k_local == rank).sum(dim=1)
        keep = torch.arange(k_local, device=dev)[None, :] < mine[:, None]
        s = s.masked_fill(~keep, float("-inf"))
    j, lse = gumbel_sample(s, generator)
    slots = j if cand is None else cand.gather(1, j[:, None])[:, 0]
    if fallback is not None and lse_full is not None:
        slots = torch.where(torch.isneginf(lse), fallback, slots)
        both = _all_to_all(torch.stack([lse, lse_full], dim=1), group).view(world, bmax, 2)[:, :b]
        lse_w, full_w = both[..., 0].T, both[..., 1].T  # [b, world] each
    else:
        # Each shard's local sample and log-sum-exp travel back to the rank of the query.
        lse_w = full_w = _all_to_all(lse, group).view(world, bmax)[:, :b].T  # [b, world]
    slot_w = _all_to_all(slots, group).view(world, bmax)
    cached_w = _all_to_all(emb[slots], group).view(world, bmax, -1)
    data_w = {
        k: _all_to_all(cache.data[k][slots], group).view(world, bmax, *cache.data[k].shape[1:])
        for k in data_keys
    }
    if b == 0 or not bool(torch.isfinite(full_w).any()):
        return no_retrieval(q, emb)
    if exclude is None:
        shard, lse = gumbel_sample(lse_w, generator)  # a second Gumbel draw over the shards
    else:
        none_left = torch.isneginf(lse_w).all(dim=1)
        shard, lse = gumbel_sample(torch.where(none_left[:, None], full_w, lse_w), generator)
        lse = lse.masked_fill(none_left, float("-inf"))
    row = torch.arange(b, device=dev)
    data = {k: v[shard, row] for k, v in data_w.items()}
    return Retrieval(lse, shard * c + slot_w[shard, row], data, cached_w[shard, row], True)


def route_updates_to_owners(
    updated_item_indices: Tensor,
    updated_item_data: Mapping[str, Tensor],
    cache_size: int,
    group: Optional[ProcessGroup] = None,
) -> Tuple[Tensor, Dict[str, Tensor]]:
    """Collective: sends each refreshed item to the rank whose shard owns its slot.

    Every rank must call it. Items arrive in rank order, so when two ranks refresh the
    same slot, `CacheManager.update_cache` keeps the higher rank's write on every run.

    Args:
      updated_item_indices: [m] int64 global indices `owner_rank * cache_size + slot`
        (m may differ across ranks, and may be 0).
      updated_item_data: {name: Tensor[m, *shape]}, the same names on every rank.
      cache_size: slots per shard.
      group: the process group, None for the default one.

    Returns:
      (local slots [m'] int64 of this rank's shard, {name: Tensor[m', *shape]}), the m'
      items any rank refreshed in this rank's shard.
    """
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
