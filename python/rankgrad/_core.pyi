# Type stubs for the compiled module rankgrad._core (PyO3).
from typing import Optional, Tuple

import numpy as np
import numpy.typing as npt

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
