"""Small torch-free helpers shared by the pairwise losses and the exact metrics."""

from __future__ import annotations

from typing import Any

from . import _core

__all__ = ["is_tensor", "GAIN_CAP", "INT64_MAX"]

# Largest target for 2^y - 1 gains (src/gains.rs MAX_GAIN_EXPONENT; read from _core.GAIN_CAP
# once the bindings export it).
GAIN_CAP = float(getattr(_core, "GAIN_CAP", 1000.0))

# Largest `k` / `truncation_level` the kernels take.
INT64_MAX = 2**63 - 1


def is_tensor(x: Any) -> bool:
    """Whether `x` is a torch.Tensor (or a subclass), without importing torch."""
    return any(c.__module__.split(".", 1)[0] == "torch" and c.__name__ == "Tensor" for c in type(x).__mro__)
