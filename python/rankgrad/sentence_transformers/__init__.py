"""rankgrad's losses for sentence-transformers (SPEC section 14).

Losses that follow sentence-transformers' own conventions (the model first in the
constructor, ``forward(sentence_features, labels)``, ``get_config_dict()``, ``citation``), so
they go into ``SentenceTransformerTrainer`` / ``CrossEncoderTrainer`` as they are:

- ``NegativeCacheRankingLoss`` for ``SentenceTransformer`` dual encoders: in-batch negatives
  (``MultipleNegativesRankingLoss``) plus the negative cache of ``rankgrad.negative_cache``
  (Lindgren et al., NeurIPS 2021), with ``NegativeCacheCheckpointCallback`` saving and restoring
  the cache with the trainer's checkpoints.
- Listwise losses for ``CrossEncoder`` rerankers on rankgrad's kernels, taking
  sentence-transformers' listwise data format (a query, its list of documents, their labels):
  ``ApproxNDCGLoss``, ``LambdaLoss``, ``ListMLELoss``, ``RankNetLoss``.

This package is the only part of rankgrad that imports sentence-transformers: ``import
rankgrad`` never does. Without it installed, importing this package raises an ImportError that
says ``pip install "rankgrad[sentence-transformers]"``.
"""

from __future__ import annotations

_INSTALL = 'pip install "rankgrad[sentence-transformers]"'

try:
    import sentence_transformers as _sentence_transformers  # noqa: F401
    import torch as _torch  # noqa: F401
except ImportError as _err:
    raise ImportError(
        f"rankgrad.sentence_transformers needs sentence-transformers and PyTorch ({_err}): {_INSTALL}"
    ) from _err

from ._cross_encoder import ApproxNDCGLoss, LambdaLoss, ListMLELoss, RankNetLoss  # noqa: E402
from ._negative_cache import NegativeCacheCheckpointCallback, NegativeCacheRankingLoss  # noqa: E402

__all__ = [
    "ApproxNDCGLoss",
    "LambdaLoss",
    "ListMLELoss",
    "NegativeCacheCheckpointCallback",
    "NegativeCacheRankingLoss",
    "RankNetLoss",
]
