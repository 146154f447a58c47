"""Drawing one cached slot per query from softmax(logits) by Gumbel-max."""

from __future__ import annotations

import math
from typing import Dict, NamedTuple, Optional, Tuple

import torch
from torch import Tensor

# Rows longer than this are sampled in two Gumbel-max stages (blocks, then within a block).
_FLAT_SAMPLE_MAX = 1024


class Retrieval(NamedTuple):
    """One sampled slot per query, with what the loss needs from it."""

    lse: Tensor  # [B] log-sum-exp of the cache's logits (over the top k when set)
    slots: Tensor  # [B] int64 sampled slot (global index when sharded)
    data: Dict[str, Tensor]  # {data_key: [B, ...]} the sampled documents
    cached: Tensor  # [B, D] their cached embeddings
    valid: bool  # False when no slot could be sampled


def no_retrieval(q: Tensor, emb: Tensor) -> Retrieval:
    """Nothing could be sampled (no filled slot anywhere)."""
    return Retrieval(q.new_empty(0), q.new_empty(0, dtype=torch.int64), {}, emb[:0], False)


def _race(weights: Tensor, generator: Optional[torch.Generator]) -> Tensor:
    """Gumbel-max on log-weights: `argmax_j (log w_j + G_j)`, `G_j = -log(-log U_j)`, computed
    as `argmax_j w_j / (-log U_j)`, the exponential of the same quantity. w_j = 0 is never drawn."""
    u = torch.rand(weights.shape, generator=generator, device=weights.device, dtype=weights.dtype)
    return (weights / u.log_().neg_()).max(dim=1).indices  # U = 0 gives -log U = inf: weight 0


def gumbel_sample(logits: Tensor, generator: Optional[torch.Generator]) -> Tuple[Tensor, Tensor]:
    """Per row, an index drawn from softmax(logits) by Gumbel-max, and logsumexp(logits).

    A row of K > _FLAT_SAMPLE_MAX logits is cut into about sqrt(K) blocks: Gumbel-max over
    the blocks' total weights picks a block, a second Gumbel-max picks within it, so
    P(j) = (W_block / W) (w_j / W_block) = softmax(logits)_j exactly, from 2 sqrt(K)
    uniforms instead of K (the same construction as the sharded cache's two draws).
    -inf logits are never drawn; a row of -inf has logsumexp -inf.

    Args:
      logits: [B, K] float.
      generator: the random source, or None for torch's global one.

    Returns:
      (index [B] int64, logsumexp [B] in the logits' dtype).
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
