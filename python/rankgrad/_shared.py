"""Deprecated shim: `is_tensor`, `GAIN_CAP` and the count rule live in `_inputs`. Kept only
for metrics.py / _metrics_op.py until they import from `_inputs`; then delete this file."""

from ._inputs import GAIN_CAP, INT64_MAX, is_tensor

__all__ = ["is_tensor", "GAIN_CAP", "INT64_MAX"]
