"""Type stubs for the compiled module `rankgrad._core` (the Rust kernels).

Arrays: `scores`/`targets` are 2-D `[B, N]` (float32 or float64, `targets` in the dtype of
`scores`), `mask` is bool `[B, N]` (True = real item); ragged inputs are 1-D `[n]` with integer
list sizes `group` `[G]` (each >= 0, summing to n). C-contiguous native-byte-order arrays are
borrowed without a copy; other layouts are copied. Kernel errors raise ValueError naming the
argument (and the list); wrong types raise TypeError. The GIL is released while a kernel runs,
on rankgrad's own thread pool (rebuilt in a forked child).
"""

from typing import Literal, Optional, SupportsIndex, Tuple, Union

import numpy as np
import numpy.typing as npt

__all__ = [
    "GAIN_CAP",
    "MAX_THREADS",
    "set_num_threads",
    "get_num_threads",
    "FAST_CELL",
    "FAST_NODES",
    "FAST_SATURATION",
    "FAST_WINDOW",
    "FAST_MIN_SEGMENT",
    "FAST_MIN_OCCUPANCY",
    "FAST_MIN_N",
    "approx_ranks",
    "approx_ranks_backward",
    "approx_ranks_double_backward",
    "approx_loss",
    "approx_loss_hvp",
    "ranknet_loss",
    "ranking_metric",
    "ranking_metric_ragged",
    "lambdarank_gradients",
    "lambdarank_loss",
    "lambda_loss",
    "xendcg_gradients",
    "pad_index_groups",
    "pad_index_qid",
]

_Float = npt.NDArray[np.floating]
_F64 = npt.NDArray[np.float64]
_Bool = npt.NDArray[np.bool_]
_Mask = Optional[_Bool]
_Int = npt.NDArray[np.integer]
_U32 = npt.NDArray[np.uint32]
_I64 = npt.NDArray[np.int64]
_Count = SupportsIndex  # any int >= 1; larger than every list means the whole list

GAIN_CAP: float
"""Largest target for `2^y - 1` gains (sums of gains stay finite in float64)."""

MAX_THREADS: int
"""The most threads `set_num_threads` accepts: 4 x the logical CPUs this process may use."""

def set_num_threads(n: Optional[SupportsIndex]) -> None:
    """Threads for rankgrad's kernels: `1 <= n <= MAX_THREADS`, or None for the default
    (`RAYON_NUM_THREADS`, else one per logical CPU). ValueError outside the range."""

def get_num_threads() -> int: ...

# -- approximate ranks (src/py/approx.rs) -----------------------------------------------------
# method: "exact" sums every pair (O(N^2) per list, in the input dtype); "fast" evaluates the same
# sums by 1-D fast summation (O(N log N + N p) per list, in float64, outputs rounded once);
# "auto" takes "fast" for lists of at least FAST_MIN_N real items. Any other string: ValueError.

_Method = Literal["exact", "fast", "auto"]

FAST_CELL: float
"""Fast summation: cell width h, in units of `s / T`."""

FAST_NODES: int
"""Fast summation: Chebyshev nodes p per cell."""

FAST_SATURATION: float
"""Fast summation: D; pairs farther apart than D (in units of T) are saturated."""

FAST_WINDOW: int
"""Fast summation: W = ceil(D / h) + 1 cells each side are interpolated, beyond is saturated."""

FAST_MIN_SEGMENT: int
"""Fast summation: a segment with fewer items sums its pairs within D directly."""

FAST_MIN_OCCUPANCY: int
"""Fast summation: a segment with fewer items per occupied cell sums its pairs within D directly."""

FAST_MIN_N: int
"""`method="auto"` uses fast summation for lists with at least this many real items."""

def approx_ranks(scores: _Float, mask: _Mask, temperature: float, method: _Method = "exact") -> _Float:
    """`r_i = 1 + sum_{j != i} sigmoid((s_j - s_i) / T)` over real items; 0 at padded ones."""

def approx_ranks_backward(
    scores: _Float, mask: _Mask, temperature: float, grad_ranks: _Float, method: _Method = "exact"
) -> _Float:
    """`dL/ds` given `dL/dr` (the closed form, O(N) memory per list)."""

def approx_ranks_double_backward(
    scores: _Float, mask: _Mask, temperature: float, grad_ranks: _Float, v: _Float, method: _Method = "exact"
) -> _Float:
    """The gradient of `sum(v * approx_ranks_backward(scores, grad_ranks))` w.r.t. scores,
    `grad_ranks` held fixed: `(1/T^2) sum_k sigmoid''((s_l - s_k)/T) (c_k - c_l) (v_l - v_k)`."""

def approx_loss(
    kind: Literal["ndcg", "mrr", "rank_mse"],
    scores: _Float,
    targets: _Float,
    mask: _Mask,
    temperature: float,
    need_grad: bool,
    scale_gains: bool = True,
    discount: Optional[Literal["log2", "reciprocal", "none"]] = None,
    method: _Method = "exact",
    weights: Optional[_Float] = None,
) -> Tuple[_Float, _Bool, Optional[_Float]]:
    """`(losses [B], counts [B], d losses / d scores [B, N] or None)`; `weights`: per-item
    weights `[B, N]` in the dtype of scores (SPEC 13)."""

def approx_loss_hvp(
    kind: Literal["ndcg", "mrr", "rank_mse"],
    scores: _Float,
    targets: _Float,
    mask: _Mask,
    temperature: float,
    v: _Float,
    scale_gains: bool = True,
    discount: Optional[Literal["log2", "reciprocal", "none"]] = None,
    method: _Method = "exact",
    weights: Optional[_Float] = None,
) -> _Float:
    """Per list, the Hessian of its loss w.r.t. its scores times `v`: `[B, N]`, zero for lists
    that do not count and at padded positions; `weights` as for `approx_loss`."""

# -- RankNet (src/py/ranknet.rs) ----------------------------------------------------------------

def ranknet_loss(
    scores: _Float,
    targets: _Float,
    mask: _Mask,
    sigma: float,
    need_grad: bool,
    weights: Optional[_Float] = None,
) -> Tuple[_Float, _Bool, Optional[_Float]]:
    """`(losses [B], valid [B], grad [B, N] or None)`; `weights`: per-item `[B, N]` (SPEC 13)."""

# -- exact metrics (src/py/metrics.rs) --------------------------------------------------------

_Metric = Literal["ndcg", "mrr", "average_precision", "recall", "precision"]

def ranking_metric(
    metric: _Metric,
    scores: _Float,
    targets: _Float,
    mask: _Mask,
    k: Optional[_Count],
    scale_gains: bool = True,
) -> Tuple[_F64, _Bool]:
    """`(values [B], valid [B])`: valid is False for a list with no relevant item (value 0)."""

def ranking_metric_ragged(
    metric: _Metric,
    preds: _F64,
    labels: _F64,
    group: _Int,
    k: Optional[_Count],
    scale_gains: bool = True,
) -> Tuple[_F64, _Bool]:
    """`(values [G], valid [G])` for flat float64 preds/labels `[n]` and list sizes `group`."""

# -- LambdaRank (src/py/lambdas.rs) -----------------------------------------------------------

def lambdarank_gradients(
    preds: _Float,
    labels: _Float,
    group: _Int,
    sigma: float,
    truncation_level: _Count,
    norm: bool,
    label_gain: Optional[_F64],
    weights: Optional[_F64],
    metric: Literal["ndcg", "mrr"],
    out: Optional[Tuple[_F64, _F64]] = None,
) -> Tuple[_F64, _F64]:
    """`(grad, hess)` float64 `[n]`; labels integers in `[0, len(label_gain))` (None: `2^i - 1`,
    i < 31); with `out`, written into those two contiguous float64 `[n]` arrays (and returned),
    which stay untouched when an error is raised."""

def lambdarank_loss(
    scores: _Float,
    targets: _Float,
    mask: _Mask,
    sigma: float,
    truncation_level: Optional[_Count],
    norm: bool,
    label_gain: Optional[_F64],
    metric: Literal["ndcg", "mrr"],
    need_grad: bool,
    weights: Optional[_Float] = None,
) -> Tuple[_Float, _Bool, Optional[_Float]]:
    """`(losses [B], valid [B], grad [B, N] or None)`; truncation_level None: every pair;
    label_gain None: `2^max(y, 0) - 1`; `weights`: per-item `[B, N]` (SPEC 13)."""

# -- LambdaLoss (src/py/lambda_loss.rs) --------------------------------------------------------

def lambda_loss(
    scores: _Float,
    targets: _Float,
    mask: _Mask,
    weighting: Literal["ndcg1", "ndcg2", "lambdarank", "ndcg2pp", "ranknet"],
    sigma: float,
    k: Optional[_Count],
    mu: float,
    scale_gains: bool,
    need_grad: bool,
    weights: Optional[_Float] = None,
) -> Tuple[_Float, _Bool, Optional[_Float]]:
    """`(losses [B], valid [B], grad [B, N] or None)`; k None: every pair; `weights`: per-item
    `[B, N]` (SPEC 13)."""

# -- XE-NDCG (src/py/xendcg.rs) -----------------------------------------------------------------

def xendcg_gradients(
    preds: _F64,
    labels: _Float,
    group: _Int,
    weights: Optional[_F64],
    gammas: Optional[_F64],
    states: Optional[_U32],
) -> Tuple[_F64, _F64]:
    """`(grad, hess)` float64 `[n]`; gammas None: drawn from `states` (one uint32 generator state
    per list, advanced in place)."""

# -- ragged <-> padded index (src/py/pad.rs) ----------------------------------------------------

def pad_index_groups(group: _Int, n: int) -> Tuple[_I64, _I64]:
    """`(index [n], sizes [B])` int64 for lists of sizes `group` over `n` rows: row `r` of list `g`
    at position `p` goes to slot `g * N + p` of the padded batch (`N = max(sizes)`)."""

def pad_index_qid(qid: npt.NDArray[Union[np.integer, np.floating]], padded: bool) -> Tuple[_I64, _I64]:
    """`(index [n], sizes [B])` int64 for lists by query id `qid [n]` (integers, float32 or
    float64; NaN refused), lists in order of first appearance: `index` is `list * N + position`
    (`padded`) or the row's position in list order (`padded=False`)."""
