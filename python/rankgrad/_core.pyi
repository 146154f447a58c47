"""Type stubs for the compiled module rankgrad._core (Rust, PyO3)."""

from typing import Literal, Optional, Tuple

import numpy as np
import numpy.typing as npt

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
