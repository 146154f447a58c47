"""rankgrad: learning-to-rank losses, gradients and metrics on a Rust core."""

from . import lightgbm, nn, xgboost  # the adapters import lightgbm / xgboost lazily
from ._core import get_num_threads, set_num_threads
from .approx import approx_mrr_loss, approx_ndcg_loss, approx_rank_mse_loss, approx_ranks
from .lambdarank import lambdarank_gradients, lambdarank_loss
from .metrics import mrr, ndcg
from .ranknet import ranknet_loss

__version__ = "0.1.0"

__all__ = [
    "approx_ranks",
    "approx_ndcg_loss",
    "approx_mrr_loss",
    "approx_rank_mse_loss",
    "ranknet_loss",
    "lambdarank_loss",
    "lambdarank_gradients",
    "ndcg",
    "mrr",
    "get_num_threads",
    "set_num_threads",
    "lightgbm",
    "nn",
    "xgboost",
]
