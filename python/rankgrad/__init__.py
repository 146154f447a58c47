"""rankgrad: learning-to-rank losses, gradients and metrics on a Rust core."""

from ._core import get_num_threads, set_num_threads
from .lambdarank import lambdarank_gradients, lambdarank_loss
from . import nn

__version__ = "0.1.0"

__all__ = ["get_num_threads", "set_num_threads", "lambdarank_gradients", "lambdarank_loss", "nn"]
