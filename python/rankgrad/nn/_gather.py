"""Gathering embedding rows from every rank of torch.distributed, gradients flowing back."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, List, Optional, Tuple

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

if TYPE_CHECKING:
    from torch.distributed import ProcessGroup

__all__ = ["gather_batches", "process_group"]


def process_group() -> Optional[ProcessGroup]:
    """The default group when torch.distributed runs with more than one rank, else None."""
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return dist.group.WORLD
    return None


class _GatherRows(torch.autograd.Function):
    """Concatenates the `[n_r, D]` rows of every rank in rank order (n_r may differ).

    Backward: the gradient of the gathered rows is summed over ranks and each rank
    takes back its own rows, so every rank's loss reaches the rows it used.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, sizes: List[int], rank: int, group: ProcessGroup) -> Tensor:
        dist = torch.distributed
        ctx.sizes, ctx.rank, ctx.group = sizes, rank, group
        width = max(sizes)
        buf = x.new_zeros((width, x.shape[1]))
        buf[: x.shape[0]] = x
        parts = [torch.empty_like(buf) for _ in sizes]
        dist.all_gather(parts, buf, group=group)
        return torch.cat([p[:n] for p, n in zip(parts, sizes)])

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> Tuple[Tensor, None, None, None]:
        dist = torch.distributed
        grad = grad.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(grad, op=dist.ReduceOp.SUM, group=ctx.group)
        start = sum(ctx.sizes[: ctx.rank])
        return grad[start : start + ctx.sizes[ctx.rank]], None, None, None


def gather_batches(
    anchors: Tensor, positives: Tensor, negatives: Tensor, with_anchors: bool, group: ProcessGroup
) -> Tuple[Optional[Tensor], Tensor, Tensor, int]:
    """Collective: every rank's (anchors, positives, negatives) in rank order, and this rank's
    offset (the number of anchors of the lower ranks).

    This rank's own rows are the local tensors themselves (their local graph is kept);
    the other ranks' rows come through `_GatherRows`, whose backward sends each rank's
    gradient to the rank that produced the rows. Every rank raises the same ValueError
    when the ranks' dimensions or dtypes differ.

    Args:
      anchors, positives: [B_r, D]; negatives: [B_r * K_r, D] (B_r and K_r per rank).
      with_anchors: gather the anchors too (the symmetric loss needs them).
      group: the process group.

    Returns:
      (anchors [sum B, D] or None, positives [sum B, D], negatives [sum B K, D], offset).
    """
    dist = torch.distributed
    world, rank = dist.get_world_size(group), dist.get_rank(group)
    b, dim = positives.shape
    info = torch.tensor(
        [b, negatives.shape[0], dim, positives.element_size()], dtype=torch.int64, device=positives.device
    )
    infos = [torch.empty_like(info) for _ in range(world)]
    dist.all_gather(infos, info, group=group)
    table = [[int(v) for v in t.tolist()] for t in infos]
    for r, (_, _, d_r, size_r) in enumerate(table):
        if d_r != dim:
            raise ValueError(
                f"anchors: embedding dimension differs across ranks ({dim} on rank {rank}, {d_r} on rank {r})"
            )
        if size_r != positives.element_size():
            raise ValueError(f"anchors: dtype differs across ranks (rank {rank} vs rank {r})")
    if sum(t[0] for t in table) == 0:
        raise ValueError("anchors: every rank's batch is empty, so there is nothing to rank")

    local = [anchors, positives, negatives] if with_anchors else [positives, negatives]
    counts = [[t[0], t[0], t[1]] if with_anchors else [t[0], t[1]] for t in table]
    gathered = _GatherRows.apply(torch.cat(local), [sum(c) for c in counts], rank, group)

    pieces: List[List[Tensor]] = [[] for _ in local]
    start = 0
    for r, c in enumerate(counts):
        for k, n in enumerate(c):
            pieces[k].append(local[k] if r == rank else gathered[start : start + n])
            start += n
    offset = sum(t[0] for t in table[:rank])
    merged = [torch.cat(p) for p in pieces]
    if with_anchors:
        return merged[0], merged[1], merged[2], offset
    return None, merged[0], merged[1], offset
