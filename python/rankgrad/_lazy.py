"""Telling torch tensors apart without importing torch (the numpy core never imports it)."""

from __future__ import annotations

from typing import Any

__all__ = ["is_tensor"]


def is_tensor(x: Any) -> bool:
    """Whether `x` is a torch.Tensor (or a subclass), without importing torch."""
    return any(c.__module__.split(".", 1)[0] == "torch" and c.__name__ == "Tensor" for c in type(x).__mro__)
