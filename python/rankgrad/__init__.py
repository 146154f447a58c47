"""rankgrad: learning-to-rank losses, gradients and metrics on a Rust core.

`import rankgrad` loads numpy and the compiled core only (SPEC section 9). The torch layer
(the autograd losses, `rankgrad.nn`, `rankgrad.negative_cache`) loads on first use of one of
its names, which also registers every `torch.ops.rankgrad.*` custom op (`rankgrad._ops`);
without torch installed, using one raises an ImportError that says how to get it.

One package per family (`approx`, `ranknet`, `lambdarank`, `listwise`, `metrics`; `gbdt` behind
the `lightgbm` / `xgboost` adapters), each shaped alike; ARCHITECTURE.md is the map.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from . import lightgbm, xgboost  # the adapters import lightgbm / xgboost lazily
from ._core import get_num_threads, set_num_threads
from .lambdarank import lambdarank_gradients
from .metrics import average_precision, mrr, ndcg, precision, recall
from .pad import pad, unpad

if TYPE_CHECKING:  # what the lazy names are, for type checkers
    from . import negative_cache, nn
    from .approx import approx_mrr_loss, approx_ndcg_loss, approx_rank_mse_loss, approx_ranks
    from .lambdarank import lambdarank_loss
    from .listwise import lambda_loss, listmle_loss, softmax_loss
    from .ranknet import ranknet_loss

__version__ = "0.1.0"

# Torch names: public name -> (module, attribute or None for the module itself). Append new
# torch-only functions here (one line each) and to __all__ and the TYPE_CHECKING block above.
_TORCH_NAMES = {
    "approx_ranks": (".approx", "approx_ranks"),
    "approx_ndcg_loss": (".approx", "approx_ndcg_loss"),
    "approx_mrr_loss": (".approx", "approx_mrr_loss"),
    "approx_rank_mse_loss": (".approx", "approx_rank_mse_loss"),
    "ranknet_loss": (".ranknet", "ranknet_loss"),
    "lambdarank_loss": (".lambdarank", "lambdarank_loss"),
    "lambda_loss": (".listwise", "lambda_loss"),
    "softmax_loss": (".listwise", "softmax_loss"),
    "listmle_loss": (".listwise", "listmle_loss"),
    "nn": (".nn", None),
    "negative_cache": (".negative_cache", None),
    # needs sentence-transformers too (its ImportError names the extra); not in __all__
    "sentence_transformers": (".sentence_transformers", None),
}

__all__ = [
    "approx_ranks",
    "approx_ndcg_loss",
    "approx_mrr_loss",
    "approx_rank_mse_loss",
    "ranknet_loss",
    "lambdarank_loss",
    "lambda_loss",
    "softmax_loss",
    "listmle_loss",
    "lambdarank_gradients",
    "ndcg",
    "mrr",
    "average_precision",
    "recall",
    "precision",
    "pad",
    "unpad",
    "get_num_threads",
    "set_num_threads",
    "lightgbm",
    "negative_cache",
    "nn",
    "xgboost",
]


def _require_torch(name: str) -> None:
    try:
        importlib.import_module("torch")
    except ImportError as e:
        raise ImportError(
            f'rankgrad.{name} needs PyTorch, which is not installed: pip install "rankgrad[torch]"'
        ) from e


if not TYPE_CHECKING:  # hidden from type checkers: an unknown name is an error, not Any

    def __getattr__(name: str) -> Any:
        """PEP 562: loads a torch name on first use and caches it in the module."""
        if name not in _TORCH_NAMES:
            raise AttributeError(f"module 'rankgrad' has no attribute {name!r}")
        _require_torch(name)
        importlib.import_module("._ops", __name__)  # registers every custom op
        module, attr = _TORCH_NAMES[name]
        value = importlib.import_module(module, __name__)
        if attr is not None:
            value = getattr(value, attr)
        globals()[name] = value
        return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
