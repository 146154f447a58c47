"""Type stubs for the compiled module `rankgrad._core` (the Rust kernels).

Arrays are 2-D `[B, N]`, C-contiguous arrays are borrowed without a copy; `scores` is float32
or float64 and `targets` / `grad_ranks` must have its dtype; `mask` is bool (True = real item).
Kernel errors raise ValueError naming the argument; the GIL is released while a kernel runs.
"""

from typing import Literal, Optional, Tuple

import numpy as np
import numpy.typing as npt

_Float = npt.NDArray[np.floating]
_Mask = Optional[npt.NDArray[np.bool_]]

def set_num_threads(n: int) -> None:
    """Threads for rankgrad's kernels; 0 restores rayon's default (one per core)."""

def get_num_threads() -> int: ...

# -- approximate ranks (approx.rs) -------------------------------------------------------------

def approx_ranks(scores: _Float, mask: _Mask, temperature: float) -> _Float:
    """`r_i = 1 + sum_{j != i} sigmoid((s_j - s_i) / T)` over real items; 0 at padded ones."""

def approx_ranks_backward(scores: _Float, mask: _Mask, temperature: float, grad_ranks: _Float) -> _Float:
    """`dL/ds` given `dL/dr` (the closed form, O(N^2) time, O(N) memory per list)."""

def approx_loss(
    kind: Literal["ndcg", "mrr", "rank_mse"],
    scores: _Float,
    targets: _Float,
    mask: _Mask,
    temperature: float,
    need_grad: bool,
    scale_gains: bool = True,
    discount: Optional[Literal["log2", "reciprocal", "none"]] = None,
) -> Tuple[_Float, npt.NDArray[np.bool_], Optional[_Float]]:
    """`(losses [B], counts [B], d losses / d scores [B, N] or None)`."""

# ---- RankNet and exact metrics (src/py/pairwise.rs) ----

def ranknet_loss(
    scores: npt.NDArray[np.floating],
    targets: npt.NDArray[np.floating],
    mask: Optional[npt.NDArray[np.bool_]],
    sigma: float,
    need_grad: bool,
) -> Tuple[npt.NDArray[np.floating], npt.NDArray[np.bool_], Optional[npt.NDArray[np.floating]]]:
    """(losses [B], valid [B], grad [B, N] or None); scores/targets [B, N] float32 or float64 alike."""

def ranking_metric(
    metric: Literal["ndcg", "mrr"],
    scores: npt.NDArray[np.floating],
    targets: npt.NDArray[np.floating],
    mask: Optional[npt.NDArray[np.bool_]],
    k: Optional[int],
    scale_gains: bool = True,
) -> Tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    """(values [B], valid [B]): valid is False for a list with no relevant item (value 0)."""

def ranking_metric_ragged(
    metric: Literal["ndcg", "mrr"],
    preds: npt.NDArray[np.float64],
    labels: npt.NDArray[np.float64],
    group: npt.NDArray[np.int64],
    k: Optional[int],
    scale_gains: bool = True,
) -> Tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    """(values [G], valid [G]) for flat preds/labels [n] and list sizes group [G] summing to n."""

# ---- LambdaRank (src/py/lambdas.rs) ---------------------------------------------------------

def lambdarank_gradients(
    preds: npt.NDArray[np.floating],  # [n] float32 or float64
    labels: npt.NDArray[np.floating],  # [n] float32 or float64, integers in [0, len(label_gain))
    group: npt.NDArray[np.int64],  # list sizes, summing to n
    sigma: float,
    truncation_level: int,
    norm: bool,
    label_gain: Optional[npt.NDArray[np.float64]],  # None: 2^i - 1 for i < 31
    weights: Optional[npt.NDArray[np.float64]],  # [n] or None
    metric: str,  # "ndcg" or "mrr"
) -> Tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]: ...
def lambdarank_loss(
    scores: npt.NDArray[np.floating],  # [B, N] float32 or float64
    targets: npt.NDArray[np.floating],  # [B, N], dtype of scores
    mask: Optional[npt.NDArray[np.bool_]],  # [B, N] or None
    sigma: float,
    truncation_level: Optional[int],  # None: every pair
    norm: bool,
    label_gain: Optional[npt.NDArray[np.float64]],  # None: 2^max(y, 0) - 1
    metric: str,
    need_grad: bool,
) -> Tuple[npt.NDArray[np.floating], npt.NDArray[np.bool_], Optional[npt.NDArray[np.floating]]]: ...
