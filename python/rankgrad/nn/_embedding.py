"""Embedding losses for dual encoders (SPEC section 6).

Sparsity regularizers (L1, L2, FLOPS) and the Multiple Negatives Ranking loss
(in-batch softmax cross-entropy), on one process or across torch.distributed ranks.

dtypes follow SPEC section 2: float32 and float64 are computed natively; float16 and
bfloat16 are computed in float32; the loss is returned in the input dtype (the
promoted dtype when the inputs differ).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from .._inputs import _kind, check_nonnegative, check_positive, check_reduction
from ._gather import gather_batches, process_group
from ._similarity import (
    SIMILARITIES,
    _ldexp,
    _ldexp_scalar,
    _scale_rows,
    dot_logit_gaps,
    logit_gaps,
    pair_scores,
    row_logsumexp,
)

__all__ = [
    "L1Regularization",
    "L2Regularization",
    "FLOPSRegularization",
    "MultipleNegativesRankingLoss",
]

# ----------------------------------------------------------------------------- checks


def _check_flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__}")
    return value


def _check_tensor(x: Any, name: str) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    _kind(x, name)  # sparse, quantized and other non-strided tensors: TypeError naming it
    if not torch.is_floating_point(x):
        raise TypeError(f"{name} must be a floating-point tensor, got {x.dtype}")
    return x


def _dtypes(tensors: Sequence[Tensor]) -> Tuple[torch.dtype, torch.dtype]:
    """(compute dtype, output dtype) for a set of floating-point inputs."""
    out = tensors[0].dtype
    for t in tensors[1:]:
        out = torch.promote_types(out, t.dtype)
    work = torch.float64 if out == torch.float64 else torch.float32
    return work, out


def _same_device(x: Tensor, name: str, ref: Tensor, ref_name: str) -> None:
    if x.device != ref.device:
        raise ValueError(f"{name} is on {x.device} but {ref_name} is on {ref.device}")


# ----------------------------------------------------------------------- regularizers


class _Regularization(nn.Module):
    """A sparsity penalty of query and document embeddings, weighted per side.

    Args:
      query_weight: the weight of the queries' penalty, >= 0 and finite.
      doc_weight: the weight of the documents' penalty, >= 0 and finite.
    """

    def __init__(self, query_weight: float = 1e-4, doc_weight: float = 1e-4) -> None:
        super().__init__()
        self.query_weight = check_nonnegative("query_weight", query_weight)
        self.doc_weight = check_nonnegative("doc_weight", doc_weight)

    def extra_repr(self) -> str:
        return f"query_weight={self.query_weight}, doc_weight={self.doc_weight}"

    if TYPE_CHECKING:  # nn.Module.__call__ returns Any; type checkers see forward's signature

        def __call__(self, query_embeddings: Tensor, doc_embeddings: Tensor) -> Tensor: ...

    @staticmethod
    def _penalty(rows: Tensor, weight: float) -> Tensor:  # rows: [R, D], R >= 1
        raise NotImplementedError

    def forward(self, query_embeddings: Tensor, doc_embeddings: Tensor) -> Tensor:
        """The weighted penalty of both sets of embeddings.

        Finite wherever its true value is: no intermediate (a square, a row's norm or sum,
        a mean) overflows unless the weighted penalty itself is beyond the dtype.

        Args:
          query_embeddings: [*, D] float; every leading index is a row (no rows: 0).
          doc_embeddings: [*, D] float, the same D.

        Returns:
          A scalar in the promoted dtype of the inputs, computed in float32 for float16
          and bfloat16.
        """
        q = _check_tensor(query_embeddings, "query_embeddings")
        d = _check_tensor(doc_embeddings, "doc_embeddings")
        for x, name in ((q, "query_embeddings"), (d, "doc_embeddings")):
            if x.ndim < 1:
                raise ValueError(f"{name} must be [*, D] (at least 1-D), got a 0-d tensor")
            if x.shape[-1] == 0:
                raise ValueError(f"{name} has shape {tuple(x.shape)}: the embedding dimension D must be >= 1")
        if d.shape[-1] != q.shape[-1]:
            raise ValueError(
                f"doc_embeddings has D={d.shape[-1]} but query_embeddings has D={q.shape[-1]} "
                f"(shapes {tuple(d.shape)} and {tuple(q.shape)})"
            )
        _same_device(d, "doc_embeddings", q, "query_embeddings")
        work, out = _dtypes([q, d])

        def penalty(x: Tensor, weight: float) -> Tensor:
            rows = x.to(work).reshape(-1, x.shape[-1])
            if rows.shape[0] == 0:
                return rows.sum()  # no rows: 0, still attached to the graph
            return self._penalty(rows, weight)

        return (penalty(q, self.query_weight) + penalty(d, self.doc_weight)).to(out)


class _WeightedRowNorms(torch.autograd.Function):
    """`c * ||x_i||_p` `[R]` for p = 1 or 2 and a constant `c >= 0`.

    Forward: `||x_i||_p = 2**e_i ||x_hat_i||_p` on the rescaled row (`max|x_hat_i|` in
    [1/2, 1)), then `(c_m ||x_hat_i||_p) * 2**(e_i + c_e)` with `c = c_m 2**c_e`: exact up
    to rounding, +inf only when `c ||x_i||` itself is beyond the dtype. Backward:
    `c sign(x_i)` (p = 1) or `c x_i / ||x_i||` (p = 2; 0 for a zero row), from the bounded
    rows, never through the factor `2**e_i`. The backward is differentiable (exact
    second derivatives).
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, c: float, p: int) -> Tensor:
        ctx.save_for_backward(x)
        ctx.c, ctx.p = c, p
        xh, e = _scale_rows(x)
        c_m, c_e = math.frexp(c)
        return _ldexp(c_m * torch.linalg.vector_norm(xh, ord=p, dim=-1), e + c_e)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tuple[Tensor, None, None]:
        (x,) = ctx.saved_tensors
        if ctx.p == 1:
            unit = torch.sign(x)
        else:
            xh, _ = _scale_rows(x)
            norm = torch.linalg.vector_norm(xh, dim=-1, keepdim=True)
            nonzero = norm > 0
            unit = torch.where(nonzero, xh / torch.where(nonzero, norm, torch.ones_like(norm)), 0.0)
        c_m, c_e = math.frexp(ctx.c)
        return _ldexp_scalar((c_m * grad)[:, None] * unit, c_e), None, None


class L1Regularization(_Regularization):
    """`query_weight * mean_rows ||q||_1 + doc_weight * mean_rows ||d||_1`.

    Rows are every leading index of a `[*, D]` input; a 1-D input is one row. Each row's
    norm is computed on the row rescaled by a power of two and weighted by `weight / R`
    before the rows are summed, so the result is finite wherever its true value is.

    Args:
      query_weight: the weight of the queries' term, >= 0 (default 1e-4).
      doc_weight: the weight of the documents' term, >= 0 (default 1e-4).
    """

    @staticmethod
    def _penalty(rows: Tensor, weight: float) -> Tensor:
        norms: Tensor = _WeightedRowNorms.apply(rows, weight / rows.shape[0], 1)
        return norms.sum()


class L2Regularization(_Regularization):
    """`query_weight * mean_rows ||q||_2 + doc_weight * mean_rows ||d||_2`.

    The norm is not squared; a zero row gets a zero (sub)gradient. The norm is
    `2**e ||x / 2**e||_2` with `max|x / 2**e|` in [1/2, 1) (no square overflows or
    underflows), weighted by `weight / R` before the rows are summed, so the result is
    finite wherever its true value is (`L2Regularization()(torch.full((2, 4), 1e20), same)`
    is 4e16).

    Args:
      query_weight: the weight of the queries' term, >= 0 (default 1e-4).
      doc_weight: the weight of the documents' term, >= 0 (default 1e-4).
    """

    @staticmethod
    def _penalty(rows: Tensor, weight: float) -> Tensor:
        norms: Tensor = _WeightedRowNorms.apply(rows, weight / rows.shape[0], 2)
        return norms.sum()


class FLOPSRegularization(_Regularization):
    """`query_weight * sum_j (mean_rows |q_j|)^2 + doc_weight * sum_j (mean_rows |d_j|)^2`.

    The FLOPS regularizer of SPLADE (Paria et al., ICLR 2020): a smooth proxy for the
    number of floating-point operations of a sparse dot product. Computed as
    `sum_j (sqrt(weight) * sum_rows |x_j| / R)^2`: the mean never overflows, and the
    result is +inf only when its true value is beyond the dtype (the square of a large
    mean can be).

    Args:
      query_weight: the weight of the queries' term, >= 0 (default 1e-4).
      doc_weight: the weight of the documents' term, >= 0 (default 1e-4).
    """

    @staticmethod
    def _penalty(rows: Tensor, weight: float) -> Tensor:
        out: Tensor = _FlopsPenalty.apply(rows, weight)
        return out


class _FlopsPenalty(torch.autograd.Function):
    """`sum_j y_j^2`, `y_j = sqrt(w) mean_i |x_ij|` (the mean summed as `|x_ij| / R`, so it
    never overflows), with the gradient `(2 sqrt(w) / R) y_j sign(x_ij)` formed in that
    order: it is inf only where the true gradient is. Differentiable backward."""

    @staticmethod
    def forward(ctx: Any, rows: Tensor, weight: float) -> Tensor:
        ctx.save_for_backward(rows)
        ctx.weight = weight
        return _FlopsPenalty._y(rows, weight).square().sum()

    @staticmethod
    def _y(rows: Tensor, weight: float) -> Tensor:
        return math.sqrt(weight) * (rows.abs() / rows.shape[0]).sum(dim=0)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tuple[Tensor, None]:
        (rows,) = ctx.saved_tensors
        coef = (2.0 * math.sqrt(ctx.weight) / rows.shape[0]) * _FlopsPenalty._y(rows, ctx.weight)
        return grad * coef * torch.sign(rows), None


# ------------------------------------------------------------------------------ MNRL


class MultipleNegativesRankingLoss(nn.Module):
    """In-batch softmax cross-entropy for dual encoders (InfoNCE, "MNRL").

    For anchors `a [B, D]`, positives `p [B, D]` and optional hard negatives
    `n [B, K, D]`, the candidates are `c = [p_1..p_B, n_11..n_1K, .., n_B1..n_BK]` and

        loss = mean_i  -log softmax_j(scale * sim(a_i, c_j))[i]

    `similarity` (every one symmetric, `sim(u, v) = sim(v, u)`):

    - "cosine": `u.v / (||u|| ||v||)`; a zero vector has cosine 0 with everything (as
      sentence-transformers' `cos_sim` and `F.normalize` give) and a zero gradient.
    - "dot": `u.v`.
    - "euclidean": `1/(1 + ||u - v||_2)` and "manhattan": `1/(1 + ||u - v||_1)`, as in
      quaterion. These are NOT sentence-transformers' `util.euclidean_sim` and
      `util.manhattan_sim` (nor its `SimilarityFunction.EUCLIDEAN`/`MANHATTAN`), which
      are the negative distances:
    - "euclidean_sim": `-||u - v||_2` and "manhattan_sim": `-||u - v||_1`, named after
      those sentence-transformers functions (`similarity_fct=util.euclidean_sim` there
      is `similarity="euclidean_sim"` here).

    `symmetric=True` returns the average of that loss and
    `mean_i -log softmax_j(scale * sim(p_i, a_j))[i]` (no hard negatives there).

    Finite in, finite out. Each anchor's term is computed as
    `log sum_j exp(t_j)`, `t_j = scale * (sim(a_i, c_j) - sim(a_i, p_i))`, where every
    embedding row is first rescaled by a power of two (exactly) and each `t_j` is
    formed without an intermediate overflow: "cosine" is exactly scale-invariant (no
    `eps`), distances and dot products may exceed the dtype while the logits do not.
    So a term is finite wherever its true value is; a term whose true value is beyond
    the dtype (a gap `t_j` that overflows) is +inf, never NaN, and its gradient is that
    of the true loss there: the softmax one-hot on the largest gap.

    `gather_across_devices=True` under torch.distributed: every rank's positives and
    negatives (and anchors, for the symmetric term) join the candidates, so anchor i of
    rank r has target `B_0 + .. + B_{r-1} + i`. Each rank returns the mean over its own
    anchors; each rank's embeddings receive the gradient of the sum of every rank's loss,
    so that DDP's gradient averaging yields the gradient of the mean loss over the
    global batch (exactly the one-process loss when the ranks' batch sizes are equal).
    Every rank must call the loss and its backward. A rank may have an empty batch
    (`B = 0`): it still takes part in the collectives and returns 0 ("mean", "sum") or
    an empty `[0]` ("none"); when every rank's batch is empty, every rank raises
    ValueError. Without an initialised process group it is the one-process loss, which
    needs at least one anchor.

    float16/bfloat16 inputs are computed in float32; the loss has the input dtype.

    Args:
      scale: the logits' multiplier (inverse temperature), > 0.
      similarity: "cosine", "dot", "euclidean", "manhattan", "euclidean_sim" or
        "manhattan_sim".
      symmetric: average with the positive-to-anchor direction.
      gather_across_devices: candidates from every rank of torch.distributed.
      reduction: "mean" (default) or "sum" over this rank's anchors, or "none" (`[B]`,
        per anchor; with `symmetric`, the average of anchor i's and positive i's terms).
    """

    def __init__(
        self,
        scale: float = 20.0,
        similarity: str = "cosine",
        symmetric: bool = False,
        gather_across_devices: bool = False,
        *,
        reduction: str = "mean",
    ) -> None:
        super().__init__()
        self.scale = check_positive("scale", scale)
        if not isinstance(similarity, str):
            raise TypeError(
                f"similarity must be a str, one of {SIMILARITIES}, got {type(similarity).__name__}"
            )
        if similarity not in SIMILARITIES:
            raise ValueError(f"similarity must be one of {SIMILARITIES}, got {similarity!r}")
        self.similarity = similarity
        self.symmetric = _check_flag("symmetric", symmetric)
        self.gather_across_devices = _check_flag("gather_across_devices", gather_across_devices)
        if not isinstance(reduction, str):
            raise TypeError(f"reduction must be a str, got {type(reduction).__name__}")
        check_reduction(reduction)
        self.reduction = reduction

    def extra_repr(self) -> str:
        return (
            f"scale={self.scale}, similarity={self.similarity!r}, symmetric={self.symmetric}, "
            f"gather_across_devices={self.gather_across_devices}, reduction={self.reduction!r}"
        )

    if TYPE_CHECKING:  # nn.Module.__call__ returns Any; type checkers see forward's signature

        def __call__(
            self, anchors: Tensor, positives: Tensor, negatives: Optional[Tensor] = None
        ) -> Tensor: ...

    def forward(self, anchors: Tensor, positives: Tensor, negatives: Optional[Tensor] = None) -> Tensor:
        """The loss of this rank's anchors.

        Args:
          anchors: [B, D] float.
          positives: [B, D] float; positive i belongs to anchor i.
          negatives: [B, K, D] float hard negatives (K may be 0), or None.

        Returns:
          A scalar ("mean", "sum") or `[B]` ("none") in the promoted input dtype.
        """
        group = process_group() if self.gather_across_devices else None
        a, p, n, out = _check_triplet(anchors, positives, negatives, allow_empty=group is not None)
        b = a.shape[0]
        all_a: Optional[Tensor]
        if group is None:
            all_a, all_p, all_n, offset = a, p, n, 0
        else:
            all_a, all_p, all_n, offset = gather_batches(a, p, n, self.symmetric, group)
        target = torch.arange(offset, offset + b, device=a.device)
        cands = torch.cat([all_p, all_n])
        scores = None
        if self.similarity == "dot":
            gaps = dot_logit_gaps(a, cands, target, self.scale)
        else:
            scores = pair_scores(a, cands, self.similarity)
            gaps = logit_gaps(scores, target, self.scale)
        loss = row_logsumexp(gaps)
        if self.symmetric:
            assert all_a is not None  # the local anchors, or every rank's when gathered
            if self.similarity == "dot":
                back = dot_logit_gaps(p, all_a, target, self.scale)
            elif group is None:
                # sim(p_i, a_j) = sim(a_j, p_i): the first b columns of the scores, transposed
                assert scores is not None
                back = logit_gaps(scores.head_transposed(b), target, self.scale)
            else:
                back = logit_gaps(pair_scores(p, all_a, self.similarity), target, self.scale)
            loss = 0.5 * (loss + row_logsumexp(back))
        if self.reduction == "sum" or (self.reduction == "mean" and b == 0):
            loss = loss.sum()  # an empty batch gives 0, still attached to the gathered rows
        elif self.reduction == "mean":
            loss = loss.mean()
        return loss.to(out)


def _check_triplet(
    anchors: Any, positives: Any, negatives: Any, allow_empty: bool
) -> Tuple[Tensor, Tensor, Tensor, torch.dtype]:
    """(anchors, positives, negatives flattened to [B*K, D]) in the compute dtype, and the output dtype."""
    a = _check_tensor(anchors, "anchors")
    p = _check_tensor(positives, "positives")
    if a.ndim != 2:
        raise ValueError(f"anchors must be 2-D [B, D], got shape {tuple(a.shape)}")
    if a.shape[0] == 0 and not allow_empty:
        raise ValueError(
            "anchors must hold at least one row, got an empty batch (only a rank of a distributed "
            "gather_across_devices=True loss may have an empty batch)"
        )
    if a.shape[1] == 0:
        raise ValueError(f"anchors has shape {tuple(a.shape)}: the embedding dimension D must be >= 1")
    if p.ndim != 2:
        raise ValueError(f"positives must be 2-D [B, D], got shape {tuple(p.shape)}")
    if p.shape != a.shape:
        raise ValueError(
            f"positives has shape {tuple(p.shape)}, expected {tuple(a.shape)} like anchors "
            "(same batch size and dimension)"
        )
    _same_device(p, "positives", a, "anchors")
    tensors = [a, p]
    if negatives is not None:
        n = _check_tensor(negatives, "negatives")
        if n.ndim != 3:
            hint = " (for one negative per anchor, pass negatives.unsqueeze(1))" if n.ndim == 2 else ""
            raise ValueError(f"negatives must be 3-D [B, K, D], got shape {tuple(n.shape)}{hint}")
        if n.shape[0] != a.shape[0] or n.shape[2] != a.shape[1]:
            raise ValueError(
                f"negatives has shape {tuple(n.shape)}, expected [{a.shape[0]}, K, {a.shape[1]}] "
                "(anchors' batch size and dimension)"
            )
        _same_device(n, "negatives", a, "anchors")
        tensors.append(n)
    work, out = _dtypes(tensors)
    a, p = a.to(work), p.to(work)
    if negatives is None:
        n = a.new_zeros((0, a.shape[1]))
    else:
        n = negatives.to(work).reshape(-1, a.shape[1])
    return a, p, n, out
