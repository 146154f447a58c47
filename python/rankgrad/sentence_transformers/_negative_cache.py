"""``NegativeCacheRankingLoss``: in-batch negatives plus rankgrad's negative cache, for
sentence-transformers dual encoders; ``NegativeCacheCheckpointCallback`` keeps the cache in the
trainer's checkpoints."""

from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterable, List, Mapping, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from sentence_transformers import util as st_util
from torch import Tensor, nn
from transformers import TrainerCallback

from ..negative_cache import CacheClassificationLoss, CacheManager, NegativeCache
from ..negative_cache._cache import _check_int, matching_slots

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer
    from transformers import TrainerControl, TrainerState, TrainingArguments

__all__ = ["NegativeCacheCheckpointCallback", "NegativeCacheRankingLoss"]

Similarity = Union[str, Callable[[Tensor, Tensor], Tensor]]

# The cache's field names: the document inputs are "input:<feature name>".
_EMBEDDING = "embedding"
_INPUT = "input:"
# sentence-transformers' similarity functions the cache can score (a dot product of
# normalised or raw embeddings), by name; the values are the names get_config_dict reports.
_SIMILARITIES = {
    "cos_sim": "cos_sim",
    "pytorch_cos_sim": "cos_sim",
    "cosine": "cos_sim",
    "dot_score": "dot_score",
    "dot": "dot_score",
}


def _similarity(similarity_fct: Similarity) -> Tuple[Callable[[Tensor, Tensor], Tensor], str]:
    """(the similarity function, "cos_sim" or "dot_score")."""
    name = similarity_fct if isinstance(similarity_fct, str) else getattr(similarity_fct, "__name__", None)
    if name not in _SIMILARITIES:
        raise ValueError(
            "similarity_fct must be sentence_transformers.util.cos_sim or dot_score (or 'cos_sim' / "
            f"'dot_score'): the cache scores documents by a dot product; got {similarity_fct!r}"
        )
    kind = _SIMILARITIES[name]
    fn = getattr(st_util, kind) if isinstance(similarity_fct, str) else similarity_fct
    return fn, kind


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).split(".")[-1]


def _storage_dtype(dtype: torch.dtype) -> torch.dtype:
    """Token ids and masks are stored as int32 (half of int64; every vocabulary fits)."""
    return torch.int32 if dtype == torch.int64 else dtype


class NegativeCacheRankingLoss(nn.Module):
    """In-batch negatives plus a negative cache (Lindgren et al., NeurIPS 2021) for a
    ``SentenceTransformer`` dual encoder.

    The in-batch part is exactly sentence-transformers' ``MultipleNegativesRankingLoss``
    (InfoNCE): for anchor i, the candidates are every positive of the batch and then every
    hard negative (columns 3, 4, ... of the dataset), with logits
    ``z_ij = scale * sim(a_i, c_j)``. The cache holds documents of earlier batches (their
    model inputs and their last embeddings ``e_k``), with logits ``u_ik = scale * sim(a_i, e_k)``.
    The loss is the softmax cross-entropy over the positive, the in-batch candidates and the
    whole cache::

        L_i = -z_ii + log(sum_j exp(z_ij) + sum_k exp(u_ik))
            = [lse_i - z_ii]  +  [log(exp(lse_i) + exp(lse_cache_i)) - lse_i]
            =   MNRL_i        +   CE_i(in-batch block vs cache)

    where ``lse_i = logsumexp_j z_ij``. The second term is ``rankgrad.negative_cache``'s
    ``CacheClassificationLoss`` with the in-batch block as its "positive" class, of logit
    ``lse_i`` (its ``positive_logits``): one cached document per anchor is drawn from
    ``softmax_k(u_ik)`` (Gumbel-max),
    re-embedded by the model (the gradient flows through it), giving ``u'_i``, and with
    ``Q_i = softmax([lse_i, lse_cache_i])[1]`` held constant, the surrogate
    ``Q_i (u'_i - lse_i)`` has, in expectation, the gradient of ``CE_i``. So the gradient of the
    loss is, in expectation, that of the full softmax over positive + in-batch + cache (exactly
    so when the cached embeddings are fresh), while only one extra document per anchor goes
    through the model. The value returned is ``mean_i L_i`` computed with the cached
    embeddings; its gradient is the estimator's.

    Each training step then writes the re-embedded documents' fresh embeddings back into their
    slots (an LRU cache: a refreshed slot becomes the youngest) and enqueues the batch's
    positives, their inputs and (detached) embeddings, into the oldest slots. While the cache
    is empty (the first step) the loss is exactly ``MultipleNegativesRankingLoss``, value and
    gradient. When the model is not training (``model.eval()`` or no grad, as in the trainer's
    evaluation) the cache is read but never changed, and nothing is sampled.

    Copies of an anchor's own positive (``exclude_positive_copies=True``, the default): a
    document seen in an earlier batch (a later epoch, or a dataset that repeats it) may still
    be cached when it comes back as a positive; as a negative of its own anchor it is a false
    negative. The cached documents whose stored ``input_ids`` equal the positive's (after
    padding to ``max_length``) are left out of that anchor's sum over k, in training (not
    drawn) and in evaluation alike: the token ids are what the cache stores and what the
    model embeds, so equal ids are the same document to the model, and no id column is
    needed in the dataset. (Without ``input_ids``, every integer field of the positive
    column is compared.) An anchor left with no cached document has a cache term of 0.

    What the cache stores, per document: every per-row tensor the model's tokenizer produced
    for the positive column (``input_ids``, ``attention_mask``, ``token_type_ids``, ...), the
    ``[B, L]`` ones padded to ``max_length`` (default the model's ``max_seq_length``) on the
    tokenizer's padding side with its pad token id (0 for the other fields), int64 kept as
    int32; and its embedding (normalised for ``cos_sim``). A re-embedded batch is cut to its
    longest real sequence first. Other features (e.g. a ``"modality"`` string) are passed
    through from the current batch.

    This is not sentence-transformers' ``CachedMultipleNegativesRankingLoss``: that is GradCache
    (a larger batch computed in chunks), not a memory of earlier batches.

    Use it with ``SentenceTransformerTrainer`` as any loss, and pass
    ``callbacks=[loss.checkpoint_callback]`` so that the cache is saved with every checkpoint
    and restored by ``trainer.train(resume_from_checkpoint=...)``. One process: under
    torch.distributed each rank keeps (and checkpoints) a cache of its own.

    Args:
      model: the ``SentenceTransformer`` to train.
      cache_size: the number of cached documents (at least the batch size).
      scale: the logits' multiplier (inverse temperature), > 0, as in MNRL.
      similarity_fct: ``sentence_transformers.util.cos_sim`` (default) or ``dot_score`` (or
        their names): the cache needs a dot-product similarity.
      max_length: the cached inputs' length; None: ``model.max_seq_length``. A batch with
        longer sequences is refused (ValueError).
      top_k: sample among each anchor's ``top_k`` best cached documents (and use only those in
        the value), None: the whole cache.
      use_lru: a refreshed slot becomes the youngest (True) or keeps its age (FIFO).
      generator: the random source of the draws; None: torch's global RNG (which the
        trainer saves and restores in its checkpoints).
      exclude_positive_copies: leave the cached copies of each anchor's own positive (equal
        ``input_ids``) out of its negatives (default True); False: every cached document
        is a negative, as in the paper.

    Inputs:
      (anchor, positive) pairs, or (anchor, positive, negative_1, ..., negative_n) tuples; no labels.

    Example::

        from datasets import Dataset
        from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer
        from rankgrad.sentence_transformers import NegativeCacheRankingLoss

        model = SentenceTransformer("path/to/model")
        train_dataset = Dataset.from_dict({"anchor": queries, "positive": documents})
        loss = NegativeCacheRankingLoss(model, cache_size=4096)
        trainer = SentenceTransformerTrainer(
            model=model, args=args, train_dataset=train_dataset, loss=loss,
            callbacks=[loss.checkpoint_callback],   # the cache goes into every checkpoint
        )
        trainer.train()                              # or train(resume_from_checkpoint=True)
    """

    def __init__(
        self,
        model: SentenceTransformer,
        cache_size: int,
        scale: float = 20.0,
        similarity_fct: Similarity = st_util.cos_sim,
        *,
        max_length: Optional[int] = None,
        top_k: Optional[int] = None,
        use_lru: bool = True,
        generator: Optional[torch.Generator] = None,
        exclude_positive_copies: bool = True,
    ) -> None:
        super().__init__()
        self.model = model
        self.cache_size = _check_int(cache_size, "cache_size")
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not (0 < scale < math.inf):
            raise ValueError(f"scale must be a positive finite number, got {scale!r}")
        self.scale = float(scale)
        self.similarity_fct, self._similarity = _similarity(similarity_fct)
        if max_length is not None:
            _check_int(max_length, "max_length")
        self.max_length = max_length
        if top_k is not None:
            _check_int(top_k, "top_k")
        self.top_k = top_k
        self.use_lru = bool(use_lru)
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
        self.generator = generator
        self.exclude_positive_copies = bool(exclude_positive_copies)
        # Made at the first training step, when the batch shows the model's input fields
        # (or by load_cache_state_dict).
        self._layout: Optional[Dict[str, Any]] = None
        self._manager: Optional[CacheManager] = None
        self._cache_loss: Optional[CacheClassificationLoss] = None
        self.cache: Optional[NegativeCache] = None
        self.checkpoint_callback = NegativeCacheCheckpointCallback(self)
        self.last_step: Dict[str, Tensor] = {}

    # ------------------------------------------------------------------ sentence-transformers

    def get_config_dict(self) -> Dict[str, Any]:
        """The options, as the constructor takes them (``type(loss)(model, **config)``)."""
        config: Dict[str, Any] = {
            "cache_size": self.cache_size,
            "scale": self.scale,
            "similarity_fct": self._similarity,
            "max_length": self.max_length,
            "top_k": self.top_k,
            "use_lru": self.use_lru,
            "exclude_positive_copies": self.exclude_positive_copies,
        }
        return config

    @property
    def citation(self) -> str:
        return """
@inproceedings{lindgren2021efficient,
  title={Efficient Training of Retrieval Models using Negative Cache},
  author={Lindgren, Erik and Reddi, Sashank and Guo, Ruiqi and Kumar, Sanjiv},
  booktitle={Advances in Neural Information Processing Systems},
  volume={34},
  year={2021}
}
"""

    def forward(self, sentence_features: Iterable[Dict[str, Any]], labels: Optional[Tensor] = None) -> Tensor:
        """The loss of one batch; in training, also one step of the cache.

        Args:
          sentence_features: one features dict per column, as the trainer's collator makes
            them: anchors, positives, then hard negatives (each ``{"input_ids": [B, L], ...}``).
          labels: unused (None from the trainer).

        Returns:
          The scalar ``mean_i L_i``: the cross-entropy over the positive, the in-batch
          candidates and the cache (``MultipleNegativesRankingLoss`` while the cache is empty).
          ``self.last_step`` holds its parts as detached scalars: "in_batch", "cache" and, in
          training, "staleness" (of the re-embedded documents,
          ``||e_cached - e_fresh||^2 / ||e_fresh||^2``; 0 while the cache is empty).
        """
        features = list(sentence_features)
        if len(features) < 2:
            raise ValueError(
                f"{type(self).__name__} needs (anchor, positive[, negatives...]) columns, got {len(features)}"
            )
        doc_inputs = dict(features[1])  # before the model writes its outputs into the dict
        embeddings = [self.model(f)["sentence_embedding"] for f in features]
        anchors, candidates = embeddings[0], torch.cat(embeddings[1:])
        b = anchors.shape[0]
        logits = self.similarity_fct(anchors, candidates) * self.scale  # [B, B * (1 + K)]
        z_pos = logits[torch.arange(b, device=logits.device), torch.arange(b, device=logits.device)]
        lse = torch.logsumexp(logits, dim=1)
        in_batch = (lse - z_pos).mean()

        q = self._normalise(anchors)
        if not (self.model.training and torch.is_grad_enabled()):
            cache_term = self._read_only_term(q.detach(), lse.detach(), doc_inputs, b)
            self.last_step = {"in_batch": in_batch.detach(), "cache": cache_term.detach()}
            return in_batch + cache_term

        if b > self.cache_size:
            raise ValueError(
                f"the batch has {b} positives, more than cache_size={self.cache_size}: every step "
                "enqueues its whole batch"
            )
        rows, meta = self._rows(doc_inputs, b)
        self._ensure_cache(rows, embeddings[1].shape[1], anchors.device)
        assert self._manager is not None and self._cache_loss is not None and self.cache is not None
        # the in-batch block is the cache loss's "positive" class, of logit lse
        out = self._cache_loss(
            lambda data: self._embed_cached(data, meta),
            q,
            None,
            self.cache,
            positive_logits=lse,
            pos_doc_data=rows,
        )
        new_items = {**rows, _EMBEDDING: self._normalise(embeddings[1].detach()).float()}
        self._manager.update_cache(
            self.cache,
            new_items=new_items,
            updated_item_indices=out.updated_item_indices,
            updated_item_data=out.updated_item_data,
            inplace=True,
        )
        training = out.training_loss
        self.last_step = {
            "in_batch": in_batch.detach(),
            "cache": out.interpretable_loss.detach(),
            "staleness": out.staleness.detach(),
        }
        return in_batch + (out.interpretable_loss.detach() + training - training.detach()).to(in_batch.dtype)

    # ------------------------------------------------------------------------- internals

    def _normalise(self, x: Tensor) -> Tensor:
        return F.normalize(x, p=2, dim=1) if self._similarity == "cos_sim" else x

    def _read_only_term(self, q: Tensor, lse: Tensor, doc_inputs: Mapping[str, Any], b: int) -> Tensor:
        """``mean_i log(1 + exp(lse_cache_i - lse_i))`` with the cached embeddings, or 0; the
        copies of anchor i's positive left out of ``lse_cache_i`` as in training."""
        cache = self.cache
        if cache is None or not bool(cache.filled.any()):
            return lse.new_zeros(())
        emb = cache.data[_EMBEDDING]
        s = (self.scale * (q.float() @ emb.float().T)).masked_fill(~cache.filled, float("-inf"))
        keys = self._positive_keys(doc_inputs, b)
        if keys is not None:
            s = s.masked_fill(matching_slots(keys, cache.data, cache.filled), float("-inf"))
        if self.top_k is not None:
            s = s.topk(min(self.top_k, s.shape[1]), dim=1).values
        return F.softplus(torch.logsumexp(s, dim=1) - lse.float()).mean().to(lse.dtype)

    def _positive_keys(self, inputs: Mapping[str, Any], b: int) -> Optional[Dict[str, Tensor]]:
        """The positives' exclusion fields as the cache stores them, or None: exclusion off, or
        positives that cannot equal any cached row (another layout, longer than max_length)."""
        if self._cache_loss is None or self._cache_loss.exclude_keys is None:
            return None
        try:
            rows, _ = self._rows(inputs, b)
        except ValueError:
            return None
        keys = {}
        for k in self._cache_loss.exclude_keys:
            x = rows.get(k)
            field = self.cache.data[k] if self.cache is not None else None
            if x is None or field is None or tuple(x.shape[1:]) != tuple(field.shape[1:]):
                return None
            keys[k] = x.to(field.device)
        return keys

    def _sequence_length(self, inputs: Mapping[str, Any], b: int) -> Optional[int]:
        for key in ("input_ids", "attention_mask"):
            x = inputs.get(key)
            if isinstance(x, Tensor) and x.dim() == 2 and x.shape[0] == b:
                return int(x.shape[1])
        return None

    def _rows(self, inputs: Mapping[str, Any], b: int) -> Tuple[Dict[str, Tensor], Dict[str, Any]]:
        """The positives' cache rows ``{"input:<name>": [B, ...]}`` and the pass-through features."""
        length = self._sequence_length(inputs, b)
        max_length = self._max_length()
        tokenizer = getattr(self.model, "tokenizer", None)
        pad_id = getattr(tokenizer, "pad_token_id", None) or 0
        left = getattr(tokenizer, "padding_side", "right") == "left"
        rows: Dict[str, Tensor] = {}
        meta: Dict[str, Any] = {}
        for key, x in inputs.items():
            if not (isinstance(x, Tensor) and x.dim() >= 1 and x.shape[0] == b):
                meta[key] = x
                continue
            x = x.detach()
            if length is not None and x.dim() == 2 and x.shape[1] == length:
                if max_length is None:
                    raise ValueError(
                        "the model has no max_seq_length: pass max_length= to NegativeCacheRankingLoss, "
                        "the length the cache pads token sequences to"
                    )
                if length > max_length:
                    raise ValueError(
                        f"the positives' {key!r} has length {length}, more than max_length={max_length}: "
                        "pass a max_length at least the tokenizer's truncation length"
                    )
                pad = (max_length - length, 0) if left else (0, max_length - length)
                x = F.pad(x, pad, value=pad_id if key == "input_ids" else 0)
            rows[_INPUT + key] = x
        if not rows:
            raise ValueError("the positive column has no per-row tensor to cache (no input_ids, ...)")
        return rows, meta

    def _max_length(self) -> Optional[int]:
        if self.max_length is not None:
            return self.max_length
        value = getattr(self.model, "max_seq_length", None)
        return int(value) if value is not None else None

    def _ensure_cache(self, rows: Mapping[str, Tensor], dim: int, device: torch.device) -> None:
        """Makes the cache at the first step, or checks that the batch fits its layout."""
        fields = {
            k[len(_INPUT) :]: {"shape": list(v.shape[1:]), "dtype": _dtype_name(v.dtype)}
            for k, v in rows.items()
        }
        tokenizer = getattr(self.model, "tokenizer", None)
        layout = {
            "fields": fields,
            "dim": int(dim),
            "similarity": self._similarity,
            "padding_side": str(getattr(tokenizer, "padding_side", "right")),
        }
        if self._layout is None:
            self._build(layout, device)
        elif layout != self._layout:
            raise ValueError(
                f"this batch's positives do not fit the cache: the cache holds {self._layout}, "
                f"the batch gives {layout}"
            )

    def _build(self, layout: Dict[str, Any], device: torch.device) -> None:
        specs: Dict[str, Tuple[Tuple[int, ...], torch.dtype]] = {}
        for name, f in layout["fields"].items():
            dtype = getattr(torch, f["dtype"])
            specs[_INPUT + name] = (tuple(f["shape"]), _storage_dtype(dtype))
        specs[_EMBEDDING] = ((layout["dim"],), torch.float32)
        exclude: Optional[Tuple[str, ...]] = None
        if self.exclude_positive_copies:
            ids = _INPUT + "input_ids"
            if ids in specs:
                exclude = (ids,)
            else:  # no token ids: every integer (or bool) input field
                ints = tuple(
                    k for k, (_, dt) in specs.items() if k != _EMBEDDING and not dt.is_floating_point
                )
                exclude = ints or None
        self._layout = layout
        self._manager = CacheManager(specs, self.cache_size, use_lru=self.use_lru)
        self._cache_loss = CacheClassificationLoss(
            _EMBEDDING,
            tuple(k for k in specs if k != _EMBEDDING),
            score_transform=self._scaled,
            top_k=self.top_k,
            generator=self.generator,
            exclude_keys=exclude,
        )
        self.cache = self._manager.init_cache(device)

    def _scaled(self, s: Tensor) -> Tensor:
        return self.scale * s

    def _embed_cached(self, data: Mapping[str, Tensor], meta: Mapping[str, Any]) -> Tensor:
        """The model's embedding of sampled cached documents, as the cache stores them ``[n, D]``."""
        assert self._layout is not None
        features: Dict[str, Any] = {}
        for name, f in self._layout["fields"].items():
            features[name] = data[_INPUT + name].to(getattr(torch, f["dtype"]))
        mask = features.get("attention_mask")
        if isinstance(mask, Tensor) and mask.dim() == 2 and mask.shape[1] > 0:
            used = mask.bool().any(dim=0).nonzero().flatten()
            if used.numel():  # cut the padding every sampled row has
                left = self._layout["padding_side"] == "left"
                start, stop = (int(used[0]), mask.shape[1]) if left else (0, int(used[-1]) + 1)
                width = mask.shape[1]
                for name, x in features.items():
                    if x.dim() == 2 and x.shape[1] == width:
                        features[name] = x[:, start:stop]
        features.update(meta)
        return self._normalise(self.model(features)["sentence_embedding"])

    # ---------------------------------------------------------------------- checkpoints

    def cache_state_dict(self) -> Optional[Dict[str, Any]]:
        """The cache as a checkpoint entry (None before the first training step): tensors,
        ints, strs, lists and dicts only, so ``torch.load(path, weights_only=True)`` reads it.

        Returns:
          ``{"layout": {...}, "cache": CacheManager.state_dict(cache), "loss":
          CacheClassificationLoss.state_dict()}`` (the cache's data, ages and filled flags,
          and the generator's state if there is one), or None.
        """
        if self.cache is None:
            return None
        assert self._manager is not None and self._cache_loss is not None
        return {
            "layout": self._layout,
            "cache": self._manager.state_dict(self.cache),
            "loss": self._cache_loss.state_dict(),
        }

    def load_cache_state_dict(self, state: Optional[Mapping[str, Any]]) -> None:
        """Restores what ``cache_state_dict`` returned, on the model's device (None: no cache
        yet). Its cache_size must be this loss's. A cache saved by earlier versions, whose
        embedding field had a trailing column of 0 (``[cache_size, D + 1]``), is read too."""
        if state is None:
            self._layout = self._manager = self._cache_loss = self.cache = None
            return
        if not isinstance(state, Mapping) or set(state) != {"layout", "cache", "loss"}:
            raise ValueError("state must be what NegativeCacheRankingLoss.cache_state_dict returned")
        layout = dict(state["layout"])
        if layout.get("similarity") != self._similarity:
            raise ValueError(
                f"the saved cache was scored with {layout.get('similarity')}, this loss uses {self._similarity}"
            )
        device = self.model.device
        saved = (self._layout, self._manager, self._cache_loss, self.cache)
        try:
            self._build(layout, device)
            assert self._manager is not None and self._cache_loss is not None
            cache_state = _without_trailing_column(state["cache"], layout.get("dim"))
            self.cache = self._manager.load_state_dict(cache_state, device=device)
            self._cache_loss.load_state_dict(state["loss"])
        except Exception:
            self._layout, self._manager, self._cache_loss, self.cache = saved
            raise


def _without_trailing_column(cache_state: Any, dim: Any) -> Any:
    """A cache state of the earlier layout, whose embedding field was ``[cache_size, D + 1]``
    with a last column of 0 (the in-batch log-sum-exp entered the cache loss through it), in
    today's layout ``[cache_size, D]``; any other state as it is (checked by the manager)."""
    try:
        spec = cache_state["specs"][_EMBEDDING]
        emb = cache_state["data"][_EMBEDDING]
        old = isinstance(dim, int) and spec["shape"] == [dim + 1] and isinstance(emb, Tensor)
    except (KeyError, TypeError):
        return cache_state
    if not (old and emb.dim() == 2 and emb.shape[1] == dim + 1 and not bool(emb[:, -1].any())):
        return cache_state
    specs = {**cache_state["specs"], _EMBEDDING: {**spec, "shape": [dim]}}
    data = {**cache_state["data"], _EMBEDDING: emb[:, :-1]}
    return {**cache_state, "specs": specs, "data": data}


class NegativeCacheCheckpointCallback(TrainerCallback):
    """Saves a ``NegativeCacheRankingLoss``'s cache in every checkpoint of the trainer, and
    restores it when training resumes from one.

    ``on_save`` writes ``<output_dir>/checkpoint-<step>/<filename>`` (``torch.save`` of the loss's
    ``cache_state_dict()`` with the step; one file per rank under torch.distributed, the rank
    in its name). ``on_train_begin`` of a resumed run (``trainer.train(resume_from_checkpoint=...)``,
    global step G > 0) loads the file of step G from ``args.resume_from_checkpoint`` if that is
    a folder, else from ``<output_dir>/checkpoint-G`` (where ``resume_from_checkpoint=True`` and
    the usual paths point). A checkpoint elsewhere: load it yourself with
    ``loss.load_cache_state_dict(torch.load(path, weights_only=True)["cache"])`` and use
    ``if_missing="keep"``.

    Every loss has one: ``loss.checkpoint_callback``; pass it to the trainer's ``callbacks``.

    Args:
      loss: the loss whose cache to save.
      filename: the file's name in the checkpoint folder.
      if_missing: when resuming and no file of that step is found: "raise" (default) a
        FileNotFoundError, or "keep" the loss's current cache (empty, or loaded by hand).
    """

    def __init__(
        self,
        loss: NegativeCacheRankingLoss,
        filename: str = "rankgrad_negative_cache.pt",
        if_missing: str = "raise",
    ) -> None:
        super().__init__()
        if if_missing not in ("raise", "keep"):
            raise ValueError(f"if_missing must be 'raise' or 'keep', got {if_missing!r}")
        self.loss = loss
        self.filename = filename
        self.if_missing = if_missing

    def _file(self, folder: str) -> str:
        name = self.filename
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            if torch.distributed.get_world_size() > 1:
                stem, ext = os.path.splitext(name)
                name = f"{stem}-rank{torch.distributed.get_rank()}{ext}"
        return os.path.join(folder, name)

    def on_save(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        folder = os.path.join(args.output_dir, f"checkpoint-{state.global_step}")
        os.makedirs(folder, exist_ok=True)
        torch.save(
            {"global_step": state.global_step, "cache": self.loss.cache_state_dict()}, self._file(folder)
        )

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        step = state.global_step
        if step == 0:
            return
        folders: List[str] = []
        resume = getattr(args, "resume_from_checkpoint", None)
        if isinstance(resume, str) and os.path.isdir(resume):
            folders.append(resume)
        folders.append(os.path.join(args.output_dir, f"checkpoint-{step}"))
        for folder in folders:
            path = self._file(folder)
            if os.path.isfile(path):
                payload = torch.load(path, map_location="cpu", weights_only=True)
                if payload.get("global_step") == step:
                    self.loss.load_cache_state_dict(payload["cache"])
                    return
        if self.if_missing == "raise":
            raise FileNotFoundError(
                f"resuming at step {step}, but no negative cache of that step was found (looked for "
                f"{[self._file(f) for f in folders]}). Load it with loss.load_cache_state_dict(...) and "
                "pass NegativeCacheCheckpointCallback(loss, if_missing='keep'), or use if_missing='keep' "
                "to go on with an empty cache"
            )
