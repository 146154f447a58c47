"""Small torch-free helpers shared by the pairwise losses and the exact metrics.

The approx branch's torch-free `_inputs` owns `GAIN_CAP` and `is_tensor`; once it is merged
they are taken from there (and this module can go, importing them from `_inputs` directly).
"""

from __future__ import annotations

import sys
from typing import Any

from . import _core

__all__ = ["is_tensor", "GAIN_CAP", "INT64_MAX"]

# Largest `k` / `truncation_level` the kernels take.
INT64_MAX = 2**63 - 1

try:
    from ._inputs import GAIN_CAP, is_tensor  # type: ignore[attr-defined]
except ImportError:
    # Largest target for 2^y - 1 gains (src/gains.rs MAX_GAIN_EXPONENT, _core.GAIN_CAP once exported).
    GAIN_CAP = float(getattr(_core, "GAIN_CAP", 1000.0))

    def is_tensor(x: Any) -> bool:
        """True for a torch.Tensor, without importing torch (no tensor exists before it is)."""
        torch = sys.modules.get("torch")
        return torch is not None and isinstance(x, torch.Tensor)
