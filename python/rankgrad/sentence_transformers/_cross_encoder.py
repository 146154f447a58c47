"""Listwise losses for sentence-transformers' ``CrossEncoder`` on rankgrad's kernels.

sentence-transformers' listwise data format (its ``LambdaLoss``, ``ListNetLoss``, ...): each row
of the dataset is a query, a list of documents and a list of labels, of any length::

    {"query": "What are pandas?", "docs": ["Pandas are bears.", "Pandas are fish."], "labels": [1, 0]}

so ``forward`` gets ``inputs = [queries, docs_lists]`` and ``labels = [labels_of_query_0, ...]``.
Every (query, document) pair is scored by the model (``mini_batch_size`` pairs per forward
pass), the scores go through ``activation_fn``, and the per-query lists are padded into
``scores [B, N]`` + ``mask [B, N]`` and handed to rankgrad's functional loss, whose kernels work
per list in O(N^2) time and O(N) memory (no ``[B, N, N]`` tensor, unlike sentence-transformers'
own ``LambdaLoss``). Padded items change nothing and get exactly zero gradient.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch
from sentence_transformers.util import batch_to_device, fullname, import_from_string
from torch import Tensor, nn

import rankgrad

from .._inputs import check_count, check_positive, check_reduction

if TYPE_CHECKING:
    from sentence_transformers import CrossEncoder

__all__ = ["ApproxNDCGLoss", "LambdaLoss", "ListMLELoss", "RankNetLoss"]

Activation = Union[nn.Module, Callable[[Tensor], Tensor], str, None]

_LOG_BASES = ("natural", "binary")


# ----------------------------------------------------------------------------- helpers


def _pad_lists(values: Tensor, lengths: Sequence[int], fill: float = 0.0) -> Tuple[Tensor, Tensor]:
    """Lays the flat per-item ``values`` (list after list) out as ``[B, N]`` plus a mask.

    Args:
      values: ``[sum(lengths)]``, the items of list 0, then those of list 1, ...
      lengths: the size of each list (0 allowed).
      fill: the value at padded positions.

    Returns:
      ``(padded [B, N], mask [B, N] bool)`` with ``N = max(lengths)`` (0 for no list), True =
      real item; ``padded`` is differentiable with respect to ``values``.

    Example:
        >>> import torch
        >>> padded, mask = _pad_lists(torch.tensor([1.0, 2.0, 3.0]), [2, 0, 1])
        >>> padded
        tensor([[1., 2.],
                [0., 0.],
                [3., 0.]])
        >>> mask.tolist()
        [[True, True], [False, False], [True, False]]
    """
    n = max(lengths, default=0)
    sizes = torch.as_tensor(list(lengths), dtype=torch.int64, device=values.device)
    mask = torch.arange(n, device=values.device)[None, :] < sizes[:, None]
    if int(sizes.sum()) != values.shape[0]:
        raise ValueError(f"values has {values.shape[0]} items but the lengths sum to {int(sizes.sum())}")
    padded = values.new_full((len(lengths), n), fill).masked_scatter(mask, values)
    return padded, mask


def _resolve_activation(activation_fn: Activation) -> Callable[[Tensor], Tensor]:
    """``activation_fn`` as a callable: None is the identity; a dotted name (what
    ``get_config_dict`` reports, e.g. ``"torch.nn.modules.linear.Identity"``) is imported and, if
    it names a class, instantiated without arguments."""
    if activation_fn is None:
        return nn.Identity()
    if isinstance(activation_fn, str):
        try:
            obj = import_from_string(activation_fn)
        except ImportError as err:
            raise ValueError(f"activation_fn {activation_fn!r} cannot be imported: {err}") from None
        activation_fn = obj() if isinstance(obj, type) else obj
    if not callable(activation_fn):
        raise TypeError(
            f"activation_fn must be callable (e.g. nn.Sigmoid()), got {type(activation_fn).__name__}"
        )
    return activation_fn


def _name_of(fn: Callable[[Tensor], Tensor]) -> str:
    """A dotted name that ``_resolve_activation`` turns back into ``fn``: a module's class, or
    a function's own name."""
    if isinstance(fn, nn.Module):
        return fullname(fn)
    module, qualname = getattr(fn, "__module__", None), getattr(fn, "__qualname__", None)
    return f"{module}.{qualname}" if module and qualname else fullname(fn)


def _check_mini_batch_size(value: Any) -> Optional[int]:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"mini_batch_size must be an int or None, got {type(value).__name__}")
    return value


def _check_log_base(reduction_log: Any) -> str:
    if reduction_log not in _LOG_BASES:
        raise ValueError(f"reduction_log must be 'natural' or 'binary', got {reduction_log!r}")
    return str(reduction_log)


def _pair_scores(
    model: CrossEncoder,
    pairs: List[Tuple[str, str]],
    mini_batch_size: int,
    prompt: Optional[str],
    task: Optional[str],
) -> Tensor:
    """The model's logit for each (query, document) pair, ``[len(pairs)]`` float32, as
    sentence-transformers' own listwise losses compute it in the installed version."""
    out = []
    for i in range(0, len(pairs), mini_batch_size):
        chunk = pairs[i : i + mini_batch_size]
        if hasattr(model, "preprocess"):  # sentence-transformers >= 6
            extra = {k: v for k, v in (("prompt", prompt), ("task", task)) if v is not None}
            tokens = batch_to_device(model.preprocess(chunk, **extra), model.device)
            logits = model(tokens)["scores"]
        else:  # 4.x and 5.x: the Hugging Face model behind CrossEncoder.forward
            tokens = model.tokenizer(chunk, padding=True, truncation=True, return_tensors="pt")
            logits = model(**tokens.to(model.device))[0]
        out.append(logits.reshape(-1))
    return torch.cat(out).float()


# ------------------------------------------------------------------------ the base loss


class _ListwiseLoss(nn.Module):
    """The shared part: pairs -> scores -> ``[B, N]`` + mask -> ``self._loss``.

    Subclasses set ``self._loss(scores, targets, mask) -> Tensor`` and their options.
    """

    def __init__(
        self,
        model: CrossEncoder,
        activation_fn: Activation,
        mini_batch_size: Optional[int],
        reduction: str,
    ) -> None:
        super().__init__()
        self.model = model
        self.activation_fn = _resolve_activation(activation_fn)
        self.mini_batch_size = _check_mini_batch_size(mini_batch_size)
        if not isinstance(reduction, str):
            raise TypeError(f"reduction must be a str, got {type(reduction).__name__}")
        check_reduction(reduction)
        self.reduction = reduction
        num_labels = getattr(model, "num_labels", 1)
        if num_labels != 1:
            raise ValueError(
                f"{type(self).__name__} needs a CrossEncoder with 1 output label (one score per "
                f"pair), got a model with {num_labels} output labels"
            )

    def _loss(self, scores: Tensor, targets: Tensor, mask: Tensor) -> Tensor:
        raise NotImplementedError

    def _order(self, lengths: Sequence[int], device: torch.device) -> Optional[Tensor]:
        """A permutation of the flat items applied before padding (None: input order)."""
        return None

    def padded_scores(
        self,
        inputs: Sequence[Any],
        labels: Sequence[Any],
        prompt: Optional[str] = None,
        task: Optional[str] = None,
    ) -> Tuple[Tensor, Tensor, Tensor]:
        """The batch as rankgrad's padded layout: ``(scores [B, N], targets [B, N], mask [B, N])``.

        Args:
          inputs: ``[queries, docs_lists]``: B query strings and B lists of documents.
          labels: B lists (or 1-D tensors) of relevance labels, one per document.
          prompt: passed to ``CrossEncoder.preprocess`` (sentence-transformers >= 6).
          task: passed to ``CrossEncoder.preprocess`` (sentence-transformers >= 6).

        Returns:
          ``scores`` (float32, after ``activation_fn``, differentiable; 0 at padding),
          ``targets`` (float32, 0 at padding) and ``mask`` (True = real document).
        """
        if isinstance(labels, Tensor):
            raise ValueError(
                f"{type(self).__name__} expects one list of labels per query (listwise data: "
                "query, [doc1, ..., docN], [label1, ..., labelN]), got a single tensor"
            )
        if len(inputs) != 2:
            raise ValueError(
                f"{type(self).__name__} expects two inputs (queries, documents_lists), got {len(inputs)}"
            )
        queries, docs_lists = inputs
        if len(queries) != len(docs_lists) or len(labels) != len(queries):
            raise ValueError(
                f"got {len(queries)} queries, {len(docs_lists)} document lists and {len(labels)} label lists"
            )
        lengths = [len(docs) for docs in docs_lists]
        label_lengths = [len(lbls) for lbls in labels]
        if lengths != label_lengths:
            raise ValueError(
                f"Number of documents per query in inputs ({lengths}) does not match number of "
                f"labels per query ({label_lengths})"
            )
        device = self.model.device
        pairs = [(q, d) for q, docs in zip(queries, docs_lists) for d in docs]
        flat_labels = [torch.as_tensor(lbls, dtype=torch.float32).reshape(-1) for lbls in labels]
        targets_flat = torch.cat(flat_labels).to(device) if flat_labels else torch.zeros(0, device=device)
        scores_flat = torch.zeros(0, device=device)
        if pairs:
            chunk = self.mini_batch_size or len(queries)
            if chunk <= 0:
                chunk = len(pairs)
            scores_flat = self.activation_fn(_pair_scores(self.model, pairs, chunk, prompt, task))
        order = self._order(lengths, device)
        if order is not None:
            scores_flat, targets_flat = scores_flat[order], targets_flat[order]
        scores, mask = _pad_lists(scores_flat, lengths)
        targets, _ = _pad_lists(targets_flat, lengths)
        return scores, targets, mask

    def forward(
        self,
        inputs: Sequence[Any],
        labels: Sequence[Any],
        prompt: Optional[str] = None,
        task: Optional[str] = None,
    ) -> Tensor:
        """The loss of a batch of queries with their lists of documents.

        Args:
          inputs: ``[queries, docs_lists]``, as ``CrossEncoderTrainer`` passes a dataset with a
            query column and a column of document lists.
          labels: one list (or 1-D tensor) of relevance labels per query.
          prompt: passed to ``CrossEncoder.preprocess`` (sentence-transformers >= 6).
          task: passed to ``CrossEncoder.preprocess`` (sentence-transformers >= 6).

        Returns:
          A scalar (``reduction`` "mean" or "sum") or the ``[B]`` per-query losses ("none").
        """
        scores, targets, mask = self.padded_scores(inputs, labels, prompt, task)
        if not scores.requires_grad and torch.is_grad_enabled():
            # no document at all: a zero that still reaches the parameters (backward works)
            zero = sum((p.sum() for p in self.model.parameters()), torch.zeros((), device=scores.device))
            scores = scores + 0.0 * zero
        return self._loss(scores, targets, mask)

    def _base_config(self) -> Dict[str, Any]:
        return {
            "activation_fn": _name_of(self.activation_fn),
            "mini_batch_size": self.mini_batch_size,
            "reduction": self.reduction,
        }


# ---------------------------------------------------------------------------- the losses


class ApproxNDCGLoss(_ListwiseLoss):
    """ApproxNDCG (Qin et al., 2010) for a ``CrossEncoder``, on ``rankgrad.approx_ndcg_loss``.

    Per query, over its documents with scores ``s`` and labels ``y``, the approximate rank
    ``r_i = 1 + sum_{j != i} sigmoid((s_j - s_i) / T)`` replaces the rank in NDCG::

        loss = 1 - sum_i g(y_i) / log2(1 + r_i) / IDCG,   g(y) = 2^y - 1 (y if not scale_gains)

    with IDCG the exact ideal DCG; "mean" averages over the queries that have a relevant
    document and at least 2 documents. sentence-transformers has no ApproxNDCG loss; the
    arguments it shares with its listwise losses (``activation_fn``, ``mini_batch_size``) mean
    the same here.

    Args:
      model: a ``CrossEncoder`` with one output label.
      temperature: ``T > 0``; smaller is closer to the true rank (and less smooth).
      scale_gains: ``2^y - 1`` gains (default) or linear ``y``.
      activation_fn: applied to the logits first (``nn.Identity()`` by default; a module, a
        callable, or the dotted name ``get_config_dict`` reports).
      mini_batch_size: pairs per forward pass; None: the number of queries in the batch;
        ``<= 0``: every pair at once.
      method: "auto", "fast" (fast summation, O(N log N)) or "exact" (``rankgrad.approx_ndcg_loss``).
      reduction: "mean" (default), "sum" or "none" (``[B]``).

    Inputs:
      (query, [doc1, ..., docN]) with labels [label1, ..., labelN]; N may vary per query.

    Example::

        from datasets import Dataset
        from sentence_transformers.cross_encoder import CrossEncoder, CrossEncoderTrainer
        from rankgrad.sentence_transformers import ApproxNDCGLoss

        model = CrossEncoder("path/to/model", num_labels=1)
        train_dataset = Dataset.from_dict({
            "query": ["What are pandas?", "What is the capital of France?"],
            "docs": [["Pandas are bears.", "Pandas are fish."], ["Paris.", "Lyon.", "Nice."]],
            "labels": [[1, 0], [2, 0, 1]],
        })
        loss = ApproxNDCGLoss(model, temperature=0.5)
        CrossEncoderTrainer(model=model, train_dataset=train_dataset, loss=loss).train()
    """

    def __init__(
        self,
        model: CrossEncoder,
        temperature: float = 1.0,
        scale_gains: bool = True,
        activation_fn: Activation = nn.Identity(),  # noqa: B008  (sentence-transformers' default)
        mini_batch_size: Optional[int] = None,
        method: str = "auto",
        reduction: str = "mean",
    ) -> None:
        super().__init__(model, activation_fn, mini_batch_size, reduction)
        self.temperature = check_positive("temperature", temperature)
        self.scale_gains = bool(scale_gains)
        if method not in ("auto", "fast", "exact"):
            raise ValueError(f"method must be 'auto', 'fast' or 'exact', got {method!r}")
        self.method = method

    def _loss(self, scores: Tensor, targets: Tensor, mask: Tensor) -> Tensor:
        return rankgrad.approx_ndcg_loss(
            scores,
            targets,
            temperature=self.temperature,
            scale_gains=self.scale_gains,
            mask=mask,
            reduction=self.reduction,
            method=self.method,
        )

    def get_config_dict(self) -> Dict[str, Any]:
        """The options, as the constructor takes them (``type(loss)(model, **config)``)."""
        return {
            "temperature": self.temperature,
            "scale_gains": self.scale_gains,
            "method": self.method,
            **self._base_config(),
        }

    @property
    def citation(self) -> str:
        return """
@article{qin2010general,
  title={A general approximation framework for direct optimization of information retrieval measures},
  author={Qin, Tao and Liu, Tie-Yan and Li, Hang},
  journal={Information Retrieval},
  volume={13},
  number={4},
  pages={375--397},
  year={2010}
}
"""


# sentence-transformers' weighting-scheme classes -> rankgrad.lambda_loss's `weighting`
_SCHEMES = {
    "NoWeightingScheme": "ranknet",
    "NDCGLoss1Scheme": "ndcg1",
    "NDCGLoss2Scheme": "ndcg2",
    "LambdaRankScheme": "lambdarank",
    "NDCGLoss2PPScheme": "ndcg2pp",
}
_WEIGHTINGS = ("ndcg2pp", "ndcg2", "ndcg1", "lambdarank", "ranknet")


def _weighting(scheme: Any) -> Tuple[str, Optional[float]]:
    """(rankgrad weighting name, the scheme's mu or None) for a sentence-transformers scheme
    object, a rankgrad weighting name, or None (no weighting: RankNet)."""
    if scheme is None:
        return "ranknet", None
    if isinstance(scheme, str):
        if scheme not in _WEIGHTINGS:
            raise ValueError(
                f"weighting_scheme must be one of {_WEIGHTINGS} or a scheme object, got {scheme!r}"
            )
        return scheme, None
    name = type(scheme).__name__
    if name in _SCHEMES and type(scheme).__module__.startswith("sentence_transformers."):
        mu = getattr(scheme, "mu", None)
        return _SCHEMES[name], None if mu is None else float(mu)
    raise ValueError(
        f"weighting_scheme {fullname(scheme)} is not one rankgrad's kernel computes: use one of "
        f"sentence-transformers' {sorted(_SCHEMES)} or a name in {_WEIGHTINGS}"
    )


class LambdaLoss(_ListwiseLoss):
    """The LambdaLoss framework (Wang et al., CIKM 2018) for a ``CrossEncoder``, on
    ``rankgrad.lambda_loss``; a drop-in for sentence-transformers' ``LambdaLoss``.

    Per query, documents ordered by score at 0-based positions ``p_i``, ``D_i = log2(2 + p_i)``,
    ``G_i = (2^y_i - 1) / maxDCG@k``, over the pairs ``y_i > y_j`` with both positions ``< k``::

        loss = -sum_{(i, j)} w_ij * log2(sigmoid(sigma * (s_i - s_j)))      (reduction_log="binary")

    with the weights ``w_ij`` of the weighting scheme held constant (see
    ``rankgrad.lambda_loss``); "mean" averages the per-query sums over the queries that have
    a pair. The log-sigmoid is exact (no clamping), and no ``[B, N, N]`` tensor is built.

    Mapping from sentence-transformers' ``LambdaLoss``:

    - ``weighting_scheme``: its scheme objects map to rankgrad's weightings —
      ``NDCGLoss2PPScheme(mu)`` -> "ndcg2pp" (its ``mu``), ``NDCGLoss2Scheme`` -> "ndcg2",
      ``NDCGLoss1Scheme`` -> "ndcg1", ``LambdaRankScheme`` -> "lambdarank",
      ``NoWeightingScheme`` or None -> "ranknet"; rankgrad's names are accepted too. A custom
      scheme has no kernel here (ValueError).
    - ``k``: pairs with *both* positions in the top k, and maxDCG@k (the paper's NDCG@k
      bound, allRank's and sentence-transformers < 6's convention; sentence-transformers >= 6
      keeps pairs with *either* position in the top k).
    - ``sigma``, ``reduction_log`` ("binary": log2, "natural": ln), ``activation_fn``,
      ``mini_batch_size``: as there.
    - Normalisation: sentence-transformers averages over every pair of the batch; rankgrad
      sums the pairs of a query and averages over queries (``reduction``). ``eps`` is not
      needed: a query without a relevant document counts 0 and is left out of the mean.

    Args:
      model: a ``CrossEncoder`` with one output label.
      weighting_scheme: a sentence-transformers scheme object, a rankgrad weighting name
        ("ndcg2pp" default, "ndcg2", "ndcg1", "lambdarank", "ranknet"), or None (= "ranknet").
      k: the NDCG cutoff, or None for every position.
      sigma: the sigmoid's slope, > 0.
      reduction_log: "binary" (default, log2) or "natural".
      activation_fn: applied to the logits first (``nn.Identity()`` by default).
      mini_batch_size: pairs per forward pass; None: the number of queries; ``<= 0``: all pairs.
      mu: the ndcg2 weight of "ndcg2pp"; None: the scheme object's ``mu``, else 10.
      scale_gains: ``2^y - 1`` gains (default) or linear ``y``.
      reduction: "mean" (default), "sum" or "none" (``[B]``).

    Inputs:
      (query, [doc1, ..., docN]) with labels [label1, ..., labelN]; N may vary per query.
    """

    def __init__(
        self,
        model: CrossEncoder,
        weighting_scheme: Any = "ndcg2pp",
        k: Optional[int] = None,
        sigma: float = 1.0,
        reduction_log: str = "binary",
        activation_fn: Activation = nn.Identity(),  # noqa: B008  (sentence-transformers' default)
        mini_batch_size: Optional[int] = None,
        mu: Optional[float] = None,
        scale_gains: bool = True,
        reduction: str = "mean",
    ) -> None:
        super().__init__(model, activation_fn, mini_batch_size, reduction)
        self.weighting, scheme_mu = _weighting(weighting_scheme)
        self.mu = float(mu) if mu is not None else (scheme_mu if scheme_mu is not None else 10.0)
        if not math.isfinite(self.mu) or self.mu < 0:
            raise ValueError(f"mu must be finite and >= 0, got {self.mu}")
        self.k = check_count("k", k)
        self.sigma = check_positive("sigma", sigma)
        self.reduction_log = _check_log_base(reduction_log)
        self.scale_gains = bool(scale_gains)

    def _loss(self, scores: Tensor, targets: Tensor, mask: Tensor) -> Tensor:
        loss = rankgrad.lambda_loss(
            scores,
            targets,
            weighting=self.weighting,
            sigma=self.sigma,
            k=self.k,
            mu=self.mu,
            mask=mask,
            reduction=self.reduction,
            scale_gains=self.scale_gains,
        )
        return loss * math.log(2.0) if self.reduction_log == "natural" else loss

    def get_config_dict(self) -> Dict[str, Any]:
        """The options, as the constructor takes them (``type(loss)(model, **config)``)."""
        return {
            "weighting_scheme": self.weighting,
            "mu": self.mu,
            "k": self.k,
            "sigma": self.sigma,
            "reduction_log": self.reduction_log,
            "scale_gains": self.scale_gains,
            **self._base_config(),
        }

    @property
    def citation(self) -> str:
        return """
@inproceedings{wang2018lambdaloss,
  title={The LambdaLoss Framework for Ranking Metric Optimization},
  author={Wang, Xuanhui and Li, Cheng and Golbandi, Nadav and Bendersky, Michael and Najork, Marc},
  booktitle={Proceedings of the 27th ACM International Conference on Information and Knowledge Management},
  pages={1313--1322},
  year={2018}
}
"""


class ListMLELoss(_ListwiseLoss):
    """ListMLE (Xia et al., ICML 2008) for a ``CrossEncoder``, on ``rankgrad.listmle_loss``; a
    drop-in for sentence-transformers' ``ListMLELoss``.

    The Plackett-Luce negative log-likelihood of the order of the documents by label
    (descending), ``pi``, over a query's n documents::

        loss = sum_{i=1..n} [logsumexp(s_pi(i), ..., s_pi(n)) - s_pi(i)]

    "mean" averages over the queries with at least 2 documents (sentence-transformers divides
    each query's sum by its number of documents before averaging).

    Args:
      model: a ``CrossEncoder`` with one output label.
      activation_fn: applied to the logits first (``nn.Identity()`` by default).
      mini_batch_size: pairs per forward pass; None: the number of queries; ``<= 0``: all pairs.
      respect_input_order: documents with equal labels keep their input order (True, default);
        False shuffles each query's documents first (torch's global RNG), so ties are broken
        at random, as in sentence-transformers.
      reduction: "mean" (default), "sum" or "none" (``[B]``).

    Inputs:
      (query, [doc1, ..., docN]) with labels [label1, ..., labelN]; N may vary per query.
    """

    def __init__(
        self,
        model: CrossEncoder,
        activation_fn: Activation = nn.Identity(),  # noqa: B008  (sentence-transformers' default)
        mini_batch_size: Optional[int] = None,
        respect_input_order: bool = True,
        reduction: str = "mean",
    ) -> None:
        super().__init__(model, activation_fn, mini_batch_size, reduction)
        self.respect_input_order = bool(respect_input_order)

    def _order(self, lengths: Sequence[int], device: torch.device) -> Optional[Tensor]:
        if self.respect_input_order:
            return None
        parts, start = [], 0
        for n in lengths:
            parts.append(start + torch.randperm(n))
            start += n
        return torch.cat(parts).to(device) if parts else None

    def _loss(self, scores: Tensor, targets: Tensor, mask: Tensor) -> Tensor:
        return rankgrad.listmle_loss(scores, targets, mask=mask, reduction=self.reduction)

    def get_config_dict(self) -> Dict[str, Any]:
        """The options, as the constructor takes them (``type(loss)(model, **config)``)."""
        return {"respect_input_order": self.respect_input_order, **self._base_config()}

    @property
    def citation(self) -> str:
        return """
@inproceedings{xia2008listwise,
  title={Listwise Approach to Learning to Rank: Theory and Algorithm},
  author={Xia, Fen and Liu, Tie-Yan and Wang, Jue and Zhang, Wensheng and Li, Hang},
  booktitle={Proceedings of the 25th International Conference on Machine Learning},
  year={2008}
}
"""


class RankNetLoss(_ListwiseLoss):
    """RankNet (Burges et al., ICML 2005) for a ``CrossEncoder``, on ``rankgrad.ranknet_loss``;
    a drop-in for sentence-transformers' ``RankNetLoss``.

    Per query, the mean over its pairs with ``y_i > y_j`` (ties are not pairs)::

        loss = mean_{y_i > y_j} -log2(sigmoid(sigma * (s_i - s_j)))       (reduction_log="binary")

    "mean" averages over the queries with at least one pair (sentence-transformers averages
    over every pair of the batch). No ``[B, N, N]`` tensor is built.

    Args:
      model: a ``CrossEncoder`` with one output label.
      sigma: the sigmoid's slope, > 0.
      reduction_log: "binary" (default, log2, as sentence-transformers) or "natural" (ln: the
        value of ``rankgrad.ranknet_loss``).
      activation_fn: applied to the logits first (``nn.Identity()`` by default).
      mini_batch_size: pairs per forward pass; None: the number of queries; ``<= 0``: all pairs.
      reduction: "mean" (default), "sum" or "none" (``[B]``).

    Inputs:
      (query, [doc1, ..., docN]) with labels [label1, ..., labelN]; N may vary per query.
    """

    def __init__(
        self,
        model: CrossEncoder,
        sigma: float = 1.0,
        reduction_log: str = "binary",
        activation_fn: Activation = nn.Identity(),  # noqa: B008  (sentence-transformers' default)
        mini_batch_size: Optional[int] = None,
        reduction: str = "mean",
    ) -> None:
        super().__init__(model, activation_fn, mini_batch_size, reduction)
        self.sigma = check_positive("sigma", sigma)
        self.reduction_log = _check_log_base(reduction_log)

    def _loss(self, scores: Tensor, targets: Tensor, mask: Tensor) -> Tensor:
        loss = rankgrad.ranknet_loss(scores, targets, sigma=self.sigma, mask=mask, reduction=self.reduction)
        return loss / math.log(2.0) if self.reduction_log == "binary" else loss

    def get_config_dict(self) -> Dict[str, Any]:
        """The options, as the constructor takes them (``type(loss)(model, **config)``)."""
        return {"sigma": self.sigma, "reduction_log": self.reduction_log, **self._base_config()}

    @property
    def citation(self) -> str:
        return """
@inproceedings{burges2005learning,
  title={Learning to Rank using Gradient Descent},
  author={Burges, Chris and Shaked, Tal and Renshaw, Erin and Lazier, Ari and Deeds, Matt and Hamilton, Nicole and Hullender, Greg},
  booktitle={Proceedings of the 22nd International Conference on Machine Learning},
  pages={89--96},
  year={2005}
}
"""
