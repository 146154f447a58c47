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
