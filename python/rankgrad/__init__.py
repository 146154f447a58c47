"""rankgrad: learning-to-rank losses, gradients and metrics on a Rust core."""

from ._core import get_num_threads, set_num_threads
from .metrics import mrr, ndcg
from .ranknet import ranknet_loss

__version__ = "0.1.0"

__all__ = ["get_num_threads", "set_num_threads", "mrr", "ndcg", "ranknet_loss"]
