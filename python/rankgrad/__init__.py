"""rankgrad: learning-to-rank losses, gradients and metrics on a Rust core."""

from ._core import get_num_threads, set_num_threads
from .lambdarank import lambdarank_gradients, lambdarank_loss
from . import lightgbm, nn, xgboost  # the adapters import lightgbm / xgboost lazily

__version__ = "0.1.0"

__all__ = [
    "get_num_threads",
    "set_num_threads",
    "lambdarank_gradients",
    "lambdarank_loss",
    "lightgbm",
    "nn",
    "xgboost",
]
