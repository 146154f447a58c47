"""rankgrad.sentence_transformers (SPEC section 14): the negative-cache loss for dual encoders
and the listwise CrossEncoder losses, with tiny BERT models built here (no download).

Skips cleanly without sentence-transformers; the trainer tests also need its [train] extra
(datasets, accelerate). The lazy-import tests run everywhere (subprocesses that block the
import).
"""

from __future__ import annotations

import copy
import inspect
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, Dict, List

import pytest

import rankgrad

# ----------------------------------------------------------------------------- fixtures

WORDS = [f"w{i}" for i in range(60)]


def _st():
    return pytest.importorskip("sentence_transformers")


def _first(*modules: str) -> Any:
    """The first of these modules that imports (sentence-transformers >= 6 moved its modules;
    the old paths still import there, with a DeprecationWarning)."""
    import importlib

    for name in modules[:-1]:
        try:
            return importlib.import_module(name)
        except ImportError:
            pass
    return importlib.import_module(modules[-1])


def st_models() -> Any:  # Transformer, Pooling
    _st()
    return _first("sentence_transformers.sentence_transformer.modules", "sentence_transformers.models")


def st_losses() -> Any:  # MultipleNegativesRankingLoss
    _st()
    return _first("sentence_transformers.sentence_transformer.losses", "sentence_transformers.losses")


def _trainer_deps() -> None:
    pytest.importorskip("datasets")
    pytest.importorskip("accelerate")


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These models are tiny: one thread is several times faster than two on a busy machine."""
    try:
        import torch
    except ImportError:
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    _st()
    return build_tiny(tmp_path_factory.mktemp("tiny"))


def build_tiny(root: Path) -> Path:
    """A vocabulary and tokenizer, a BERT encoder and a BERT reranker (1 label), saved to disk."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertModel, BertTokenizerFast

    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    if "vocab" in inspect.signature(BertTokenizerFast.__init__).parameters:  # transformers >= 5
        tok = BertTokenizerFast(vocab={t: i for i, t in enumerate(tokens)}, do_lower_case=True)
    else:
        (root / "vocab.txt").write_text("\n".join(tokens) + "\n")
        tok = BertTokenizerFast(vocab_file=str(root / "vocab.txt"), do_lower_case=True)
    assert tok("w1 w2")["input_ids"] == [2, 6, 7, 3]
    options = dict(
        vocab_size=5 + len(WORDS),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    torch.manual_seed(0)
    BertModel(BertConfig(**options)).save_pretrained(root / "encoder")
    tok.save_pretrained(root / "encoder")
    torch.manual_seed(1)
    BertForSequenceClassification(BertConfig(num_labels=1, initializer_range=0.2, **options)).save_pretrained(
        root / "reranker"
    )
    tok.save_pretrained(root / "reranker")
    return root


def make_encoder(tiny_dir: Path, seed: int = 0):
    """A SentenceTransformer: the tiny BERT, mean pooling, max_seq_length 16."""
    st = _st()
    import torch

    torch.manual_seed(seed)
    models = st_models()
    transformer = models.Transformer(str(tiny_dir / "encoder"), max_seq_length=16)
    pooling = models.Pooling(transformer.get_word_embedding_dimension(), "mean")
    return st.SentenceTransformer(modules=[transformer, pooling], device="cpu")


def make_reranker(tiny_dir: Path):
    st = _st()
    return st.CrossEncoder(str(tiny_dir / "reranker"), num_labels=1, device="cpu")


def features(model: Any, texts: List[str]) -> Dict[str, Any]:
    tokenize = getattr(model, "preprocess", None) or model.tokenize
    return tokenize(texts)


def corpus(n_docs: int, seed: int):
    """Documents of 6 words (w1..w59); each query is 3 of its document's words."""
    import random

    rng = random.Random(seed)
    docs = [" ".join(rng.sample(WORDS[1:], 6)) for _ in range(n_docs)]  # w0 is kept as a marker
    queries = [" ".join(rng.sample(d.split(), 3)) for d in docs]
    return queries, docs


def mnrl_value(model: Any, queries: List[str], docs: List[str]) -> float:
    import torch
    from sentence_transformers.losses import MultipleNegativesRankingLoss

    with torch.no_grad():
        return float(
            MultipleNegativesRankingLoss(model)([features(model, queries), features(model, docs)], None)
        )


def grads(model: Any) -> Dict[str, Any]:
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def cache_tensors(state: Dict[str, Any]) -> Dict[str, Any]:
    c = state["cache"]
    return {"age": c["age"], "filled": c["filled"], **{f"data:{k}": v for k, v in c["data"].items()}}


def assert_same_cache(a: Dict[str, Any], b: Dict[str, Any]) -> None:
    import torch

    ta, tb = cache_tensors(a), cache_tensors(b)
    assert ta.keys() == tb.keys()
    for k in ta:
        assert torch.equal(ta[k], tb[k]), k
    assert a["layout"] == b["layout"]


# ------------------------------------------------------------ NegativeCacheRankingLoss


@pytest.mark.parametrize("hard_negatives", [False, True])
def test_in_batch_part_is_multiple_negatives_ranking_loss(tiny_dir: Path, hard_negatives: bool):
    """Cache empty: value and gradient are sentence-transformers' own MNRL; then the step
    enqueues exactly the positives, padded to max_seq_length."""
    import torch

    from rankgrad.sentence_transformers import NegativeCacheRankingLoss

    MultipleNegativesRankingLoss = st_losses().MultipleNegativesRankingLoss
    model = make_encoder(tiny_dir)
    queries, docs = corpus(6, seed=1)
    _, negs = corpus(6, seed=2)
    columns = [queries, docs] + ([negs] if hard_negatives else [])

    ours = NegativeCacheRankingLoss(model, cache_size=16, scale=20.0)
    value = ours([features(model, c) for c in columns], None)
    value.backward()
    g_ours = grads(model)
    model.zero_grad()
    ref = MultipleNegativesRankingLoss(model, scale=20.0)([features(model, c) for c in columns], None)
    ref.backward()
    g_ref = grads(model)
    torch.testing.assert_close(value, ref)
    assert g_ours.keys() == g_ref.keys() and len(g_ref) > 10
    for name in g_ref:
        torch.testing.assert_close(g_ours[name], g_ref[name], msg=name)

    cache = ours.cache
    assert cache is not None and int(cache.filled.sum()) == 6
    slots = cache.filled.nonzero().flatten()
    tokens = features(model, docs)["input_ids"]
    stored = cache.data["input:input_ids"][slots]
    assert stored.shape == (6, 16) and stored.dtype == torch.int32
    assert torch.equal(stored[:, : tokens.shape[1]].long(), tokens)
    assert not stored[:, tokens.shape[1] :].any()  # the pad id, 0
    assert torch.equal(cache.age[slots], torch.zeros(6, dtype=torch.int64))
    emb = model.encode(docs, convert_to_tensor=True, normalize_embeddings=True)
    assert cache.data["embedding"].shape == (16, emb.shape[1])  # no extra column (positive_logits)
    torch.testing.assert_close(cache.data["embedding"][slots], emb, rtol=1e-4, atol=1e-5)


def test_cache_term_is_the_full_softmax_with_a_fresh_cache(tiny_dir: Path):
    """top_k=1 makes the draw deterministic: the value and the gradient are exactly those of
    the softmax cross-entropy over positive + in-batch + the best cached document, re-embedded
    (the cache is fresh: the model has not changed since it was filled)."""
    import torch
    import torch.nn.functional as F

    from rankgrad.sentence_transformers import NegativeCacheRankingLoss

    model = make_encoder(tiny_dir)
    q1, d1 = corpus(8, seed=3)
    q2, d2 = corpus(5, seed=4)
    loss = NegativeCacheRankingLoss(model, cache_size=8, top_k=1)
    loss([features(model, q1), features(model, d1)], None)  # fills the cache with d1
    model.zero_grad()
    before = copy.deepcopy(loss.cache_state_dict())

    value = loss([features(model, q2), features(model, d2)], None)
    value.backward()
    g_ours = grads(model)
    model.zero_grad()

    a = F.normalize(model(features(model, q2))["sentence_embedding"], dim=1)
    p = F.normalize(model(features(model, d2))["sentence_embedding"], dim=1)
    with torch.no_grad():
        cached = F.normalize(model.encode(d1, convert_to_tensor=True), dim=1)
        best = (a @ cached.T).argmax(dim=1)
    fresh = F.normalize(model(features(model, [d1[i] for i in best.tolist()]))["sentence_embedding"], dim=1)
    logits = 20.0 * torch.cat([a @ p.T, (a * fresh).sum(1, keepdim=True)], dim=1)
    ref = F.cross_entropy(logits, torch.arange(5))
    ref.backward()
    g_ref = grads(model)
    torch.testing.assert_close(value, ref, rtol=1e-5, atol=1e-5)
    for name in g_ref:
        torch.testing.assert_close(g_ours[name], g_ref[name], rtol=1e-4, atol=1e-6, msg=name)
    assert float(loss.last_step["cache"]) > 0 and float(loss.last_step["staleness"]) < 1e-8

    # the step enqueued d2 (the youngest now) and aged the rest
    after = loss.cache_state_dict()
    assert after is not None and bool(after["cache"]["filled"].all())
    stored = after["cache"]["data"]["input:input_ids"].long()
    tokens = features(model, d2)["input_ids"]
    for row in tokens:
        hits = (stored[:, : tokens.shape[1]] == row).all(dim=1).nonzero().flatten()
        assert hits.numel() and int(after["cache"]["age"][hits[0]]) == 0
    assert bool(before["cache"]["age"].eq(0).all())


def test_cache_term_is_unchanged_from_the_extra_column_formulation(tiny_dir: Path):
    """Passing lse_i as positive_logits gives what the earlier formulation gave (an embedding
    column of 0 in the cache and of 1 in the queries, through which lse_i entered as
    <q_x, pos_x> * scale): the same value and, from the same generator state, the same draws
    and gradients."""
    import torch
    import torch.nn.functional as F

    from rankgrad.negative_cache import CacheClassificationLoss, NegativeCache
    from rankgrad.sentence_transformers import NegativeCacheRankingLoss

    model = make_encoder(tiny_dir)
    q1, d1 = corpus(10, seed=3)
    q2, d2 = corpus(6, seed=4)
    loss = NegativeCacheRankingLoss(model, cache_size=16, generator=torch.Generator().manual_seed(7))
    loss([features(model, q1), features(model, d1)], None)
    model.zero_grad()
    cache, state = loss.cache.clone(), loss.generator.get_state()
    value = loss([features(model, q2), features(model, d2)], None)
    value.backward()
    g_new = grads(model)
    model.zero_grad()

    emb = cache.data["embedding"]
    old = NegativeCache({**cache.data, "embedding": F.pad(emb, (0, 1))}, cache.age, cache.filled)
    gen = torch.Generator()
    gen.set_state(state)
    old_loss = CacheClassificationLoss(
        "embedding",
        tuple(k for k in cache.data if k != "embedding"),
        score_transform=lambda s: 20.0 * s,
        generator=gen,
    )
    a = F.normalize(model(features(model, q2))["sentence_embedding"], dim=1)
    p = F.normalize(model(features(model, d2))["sentence_embedding"], dim=1)
    logits = 20.0 * a @ p.T
    lse = torch.logsumexp(logits, dim=1)
    q_x = torch.cat([a, a.new_ones(6, 1)], dim=1)
    pos_x = torch.cat([a.new_zeros(6, a.shape[1]), (lse / 20.0)[:, None]], dim=1)
    out = old_loss(lambda d: F.pad(loss._embed_cached(d, {}), (0, 1)), q_x, pos_x, old)
    ref = (
        (lse - logits.diag()).mean()
        + out.interpretable_loss.detach()
        + out.training_loss
        - out.training_loss.detach()
    )
    ref.backward()
    g_old = grads(model)
    torch.testing.assert_close(value, ref, rtol=1e-6, atol=1e-6)
    assert g_new.keys() == g_old.keys()
    for name in g_old:
        torch.testing.assert_close(g_new[name], g_old[name], rtol=1e-4, atol=1e-6, msg=name)
    assert float(loss.last_step["cache"]) > 0


def test_copies_of_the_positive_are_not_its_negatives(tiny_dir: Path):
    """The cache holds this batch's own positives (an earlier step saw the same pairs). With
    top_k=1, each anchor's best cached document is then usually its positive's copy: drawn
    without exclusion, never with it. Excluded, the value and gradient are the cross-entropy
    over positive + in-batch + the best cached document that is not the copy (fresh cache),
    and evaluation leaves the copies out of the read-only value as well."""
    import torch
    import torch.nn.functional as F

    from rankgrad.sentence_transformers import NegativeCacheRankingLoss

    q, d = corpus(6, seed=12)
    drawn = {}
    for exclude in (False, True):
        model = make_encoder(tiny_dir)
        loss = NegativeCacheRankingLoss(model, cache_size=8, top_k=1, exclude_positive_copies=exclude)
        loss([features(model, q), features(model, d)], None)  # caches d in slots 0..5
        model.zero_grad()
        seen = []
        embed = loss._embed_cached
        loss._embed_cached = lambda data, meta: (
            seen.append(data["input:input_ids"].clone()),
            embed(data, meta),
        )[1]
        value = loss([features(model, q), features(model, d)], None)
        value.backward()
        ids = F.pad(features(model, d)["input_ids"], (0, 16 - features(model, d)["input_ids"].shape[1]))
        drawn[exclude] = (seen[0].long() == ids).all(dim=1)
        if not exclude:
            continue
        g_ours = grads(model)
        model.zero_grad()
        a = F.normalize(model(features(model, q))["sentence_embedding"], dim=1)
        p = F.normalize(model(features(model, d))["sentence_embedding"], dim=1)
        with torch.no_grad():
            s = (a @ p.T).fill_diagonal_(float("-inf"))  # the cache holds d, in order; no copies
            best = s.argmax(dim=1)
        fresh = F.normalize(
            model(features(model, [d[i] for i in best.tolist()]))["sentence_embedding"], dim=1
        )
        logits = 20.0 * torch.cat([a @ p.T, (a * fresh).sum(1, keepdim=True)], dim=1)
        ref = F.cross_entropy(logits, torch.arange(6))
        ref.backward()
        torch.testing.assert_close(value, ref, rtol=1e-5, atol=1e-5)
        for name, g in grads(model).items():
            torch.testing.assert_close(g_ours[name], g, rtol=1e-4, atol=1e-6, msg=name)

        model.eval()
        with torch.no_grad():
            value = loss([features(model, q), features(model, d)], None)
            a, p = a.detach(), p.detach()
            cached = (a @ p.T).fill_diagonal_(float("-inf"))
            full = 20.0 * torch.cat([a @ p.T, cached.max(dim=1, keepdim=True).values], dim=1)
        torch.testing.assert_close(value, F.cross_entropy(full, torch.arange(6)), rtol=1e-4, atol=1e-5)
    assert bool(drawn[False].any()), "without exclusion some anchor draws its positive's copy"
    assert not bool(drawn[True].any())


def test_exclusion_option_config_and_earlier_checkpoints(tiny_dir: Path):
    """exclude_positive_copies goes into the config and round-trips; a cache saved with the
    earlier [cache_size, D + 1] embedding layout loads as today's."""
    import torch
    import torch.nn.functional as F

    from rankgrad.sentence_transformers import NegativeCacheRankingLoss

    model = make_encoder(tiny_dir)
    off = NegativeCacheRankingLoss(model, 16, exclude_positive_copies=False)
    assert off.get_config_dict()["exclude_positive_copies"] is False
    assert NegativeCacheRankingLoss(model, **off.get_config_dict()).exclude_positive_copies is False
    assert NegativeCacheRankingLoss(model, 16).get_config_dict()["exclude_positive_copies"] is True

    loss = NegativeCacheRankingLoss(model, 16)
    q, d = corpus(6, seed=13)
    loss([features(model, q), features(model, d)], None)
    state = copy.deepcopy(loss.cache_state_dict())
    old = copy.deepcopy(state)
    dim = state["layout"]["dim"]
    old["cache"]["specs"]["embedding"]["shape"] = [dim + 1]
    old["cache"]["data"]["embedding"] = F.pad(state["cache"]["data"]["embedding"], (0, 1))
    fresh = NegativeCacheRankingLoss(make_encoder(tiny_dir), 16)
    fresh.load_cache_state_dict(old)
    assert_same_cache(fresh.cache_state_dict(), state)
    old["cache"]["data"]["embedding"][0, -1] = 1.0  # not the earlier layout: refused
    with pytest.raises(ValueError, match="specs"):
        fresh.load_cache_state_dict(old)
    assert_same_cache(fresh.cache_state_dict(), state)  # unchanged
    assert torch.equal(fresh.cache.age, loss.cache.age)


def test_evaluation_reads_the_cache_and_leaves_it(tiny_dir: Path):
    import torch
    import torch.nn.functional as F

    from rankgrad.sentence_transformers import NegativeCacheRankingLoss

    model = make_encoder(tiny_dir)
    q1, d1 = corpus(8, seed=5)
    q2, d2 = corpus(4, seed=6)
    loss = NegativeCacheRankingLoss(model, cache_size=12, scale=10.0)
    loss([features(model, q1), features(model, d1)], None)
    before = copy.deepcopy(loss.cache_state_dict())
    model.eval()
    with torch.no_grad():
        value = loss([features(model, q2), features(model, d2)], None)
        a = F.normalize(model.encode(q2, convert_to_tensor=True), dim=1)
        p = F.normalize(model.encode(d2, convert_to_tensor=True), dim=1)
        c = F.normalize(model.encode(d1, convert_to_tensor=True), dim=1)
    logits = 10.0 * torch.cat([a @ p.T, a @ c.T], dim=1)
    torch.testing.assert_close(value, F.cross_entropy(logits, torch.arange(4)), rtol=1e-4, atol=1e-5)
    assert_same_cache(before, loss.cache_state_dict())


def test_options_config_citation_and_errors(tiny_dir: Path):
    from sentence_transformers import util

    from rankgrad.sentence_transformers import NegativeCacheRankingLoss

    model = make_encoder(tiny_dir)
    loss = NegativeCacheRankingLoss(
        model, 64, scale=5.0, similarity_fct=util.dot_score, top_k=3, use_lru=False
    )
    config = loss.get_config_dict()
    assert config == {
        "cache_size": 64,
        "scale": 5.0,
        "similarity_fct": "dot_score",
        "max_length": None,
        "top_k": 3,
        "use_lru": False,
        "exclude_positive_copies": True,
    }
    assert NegativeCacheRankingLoss(model, **config).get_config_dict() == config
    assert "lindgren2021" in loss.citation and "Negative Cache" in loss.citation
    with pytest.raises(ValueError, match="similarity_fct"):
        NegativeCacheRankingLoss(model, 8, similarity_fct=util.manhattan_sim)
    with pytest.raises(ValueError, match="scale"):
        NegativeCacheRankingLoss(model, 8, scale=0.0)
    q, d = corpus(6, seed=7)
    with pytest.raises(ValueError, match="cache_size=4"):
        NegativeCacheRankingLoss(model, 4)([features(model, q), features(model, d)], None)
    with pytest.raises(ValueError, match="max_length=3"):
        NegativeCacheRankingLoss(model, 8, max_length=3)([features(model, q), features(model, d)], None)


def _st_args(output_dir: Path, **kw: Any):
    from sentence_transformers import SentenceTransformerTrainingArguments

    options = dict(
        output_dir=str(output_dir),
        per_device_train_batch_size=8,
        learning_rate=2e-3,
        warmup_ratio=0.0,
        lr_scheduler_type="constant",
        logging_steps=1000,
        report_to="none",
        use_cpu=True,
        seed=0,
        disable_tqdm=True,
        dataloader_num_workers=0,
        save_strategy="no",
    )
    options.update(kw)
    return SentenceTransformerTrainingArguments(**options)


def test_trainer_steps_lower_the_loss(tiny_dir: Path, tmp_path: Path):
    _trainer_deps()
    from datasets import Dataset
    from sentence_transformers import SentenceTransformerTrainer

    from rankgrad.sentence_transformers import NegativeCacheRankingLoss

    model = make_encoder(tiny_dir)
    queries, docs = corpus(64, seed=8)
    before = mnrl_value(model, queries[:32], docs[:32])
    loss = NegativeCacheRankingLoss(model, cache_size=32)
    trainer = SentenceTransformerTrainer(
        model=model,
        args=_st_args(tmp_path, max_steps=24),
        train_dataset=Dataset.from_dict({"anchor": queries, "positive": docs}),
        loss=loss,
        callbacks=[loss.checkpoint_callback],
    )
    trainer.train()
    after = mnrl_value(model, queries[:32], docs[:32])
    assert after < 0.8 * before, (before, after)
    assert loss.cache is not None and bool(loss.cache.filled.all())
    assert float(loss.last_step["cache"]) > 0


def test_checkpoint_round_trip_restores_the_cache(tiny_dir: Path, tmp_path: Path):
    """save_steps=2 writes the cache into checkpoint-2; resume_from_checkpoint loads exactly
    that cache (slots, ages, embeddings), and the resumed run ends where the uninterrupted one did."""
    _trainer_deps()
    import torch
    from datasets import Dataset
    from sentence_transformers import SentenceTransformerTrainer
    from transformers import TrainerCallback

    from rankgrad.sentence_transformers import NegativeCacheCheckpointCallback, NegativeCacheRankingLoss

    class Probe(TrainerCallback):
        def __init__(self, loss):
            self.loss, self.saved, self.at_begin = loss, {}, None

        def on_save(self, args, state, control, **kw):
            self.saved[state.global_step] = copy.deepcopy(self.loss.cache_state_dict())

        def on_train_begin(self, args, state, control, **kw):
            self.at_begin = copy.deepcopy(self.loss.cache_state_dict())

    queries, docs = corpus(48, seed=9)
    data = Dataset.from_dict({"anchor": queries, "positive": docs})
    args = _st_args(tmp_path / "run", max_steps=4, save_strategy="steps", save_steps=2)

    def run(resume=None, callback=None):
        model = make_encoder(tiny_dir)
        loss = NegativeCacheRankingLoss(model, cache_size=20)
        probe = Probe(loss)
        callbacks = [callback(loss) if callback else loss.checkpoint_callback, probe]
        trainer = SentenceTransformerTrainer(
            model=model, args=args, train_dataset=data, loss=loss, callbacks=callbacks
        )
        trainer.train(resume_from_checkpoint=resume)
        return loss, probe

    loss_a, probe_a = run()
    ckpt = tmp_path / "run" / "checkpoint-2"
    assert (ckpt / "rankgrad_negative_cache.pt").is_file()
    saved = torch.load(ckpt / "rankgrad_negative_cache.pt", weights_only=True)
    assert saved["global_step"] == 2
    assert_same_cache(saved["cache"], probe_a.saved[2])
    assert int(saved["cache"]["cache"]["filled"].sum()) == 16  # two batches of 8

    loss_b, probe_b = run(resume=str(ckpt))
    assert_same_cache(probe_b.at_begin, probe_a.saved[2])
    final_a, final_b = loss_a.cache_state_dict(), loss_b.cache_state_dict()
    for key in ("age", "filled"):
        assert torch.equal(final_a["cache"][key], final_b["cache"][key]), key
    for key, value in final_a["cache"]["data"].items():
        torch.testing.assert_close(final_b["cache"]["data"][key], value, rtol=1e-5, atol=1e-6, msg=key)

    os.remove(ckpt / "rankgrad_negative_cache.pt")
    with pytest.raises(FileNotFoundError, match="no negative cache"):
        run(resume=str(ckpt))
    loss_c, probe_c = run(
        resume=str(ckpt), callback=lambda loss: NegativeCacheCheckpointCallback(loss, if_missing="keep")
    )
    assert probe_c.at_begin is None and loss_c.cache is not None  # went on with an empty cache


# --------------------------------------------------------------------- CrossEncoder losses

LISTS = {
    "query": ["w1 w2", "w3", "w4 w5 w6", "w7"],
    "docs": [
        ["w1 w9", "w10", "w2 w1 w11", "w12 w13"],
        ["w3 w14", "w15"],
        ["w4", "w16 w17", "w5 w6 w18", "w19", "w20 w4 w21"],
        ["w7 w22"],
    ],
    "labels": [[2, 0, 3, 0], [1, 0], [1, 0, 2, 0, 1], [1]],
}


def listwise_losses():
    import torch

    from rankgrad.sentence_transformers import ApproxNDCGLoss, LambdaLoss, ListMLELoss, RankNetLoss

    return {
        "approx_ndcg": (
            ApproxNDCGLoss,
            {"temperature": 0.5},
            lambda s, y, m: rankgrad.approx_ndcg_loss(s, y, temperature=0.5, mask=m),
        ),
        "lambda": (
            LambdaLoss,
            {"k": 3, "sigma": 2.0},
            lambda s, y, m: rankgrad.lambda_loss(s, y, weighting="ndcg2pp", sigma=2.0, k=3, mask=m),
        ),
        "listmle": (ListMLELoss, {}, lambda s, y, m: rankgrad.listmle_loss(s, y, mask=m)),
        "ranknet": (
            RankNetLoss,
            {"sigma": 0.5},
            lambda s, y, m: rankgrad.ranknet_loss(s, y, sigma=0.5, mask=m) / math.log(2.0),
        ),
    }, torch


def reference_padded(model: Any, lists: Dict[str, Any]):
    """The model's logits for every pair (CrossEncoder.predict, no activation), padded by hand."""
    import torch

    pairs = [(q, d) for q, docs in zip(lists["query"], lists["docs"]) for d in docs]
    flat = model.predict(pairs, activation_fn=torch.nn.Identity(), convert_to_tensor=True).float().reshape(-1)
    n = max(len(d) for d in lists["docs"])
    s = torch.zeros(len(lists["docs"]), n)
    y = torch.zeros(len(lists["docs"]), n)
    m = torch.zeros(len(lists["docs"]), n, dtype=torch.bool)
    k = 0
    for i, labels in enumerate(lists["labels"]):
        for j, label in enumerate(labels):
            s[i, j], y[i, j], m[i, j] = flat[k], float(label), True
            k += 1
    return s, y, m


@pytest.mark.parametrize("name", ["approx_ndcg", "lambda", "listmle", "ranknet"])
def test_cross_encoder_loss_is_rankgrads_loss_on_the_padded_scores(tiny_dir: Path, name: str):
    losses, torch = listwise_losses()
    cls, options, functional = losses[name]
    model = make_reranker(tiny_dir)
    loss = cls(model, mini_batch_size=3, **options)
    inputs, labels = [LISTS["query"], LISTS["docs"]], [torch.tensor(x) for x in LISTS["labels"]]
    value = loss(inputs, labels)
    value.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    s, y, m = reference_padded(model, LISTS)
    torch.testing.assert_close(value.detach(), functional(s, y, m), rtol=1e-4, atol=1e-6)
    # padding changes nothing: each query alone gives its row of reduction="none"
    per_query = cls(model, reduction="none", **options)(inputs, labels).detach()
    assert per_query.shape == (4,)
    for i in range(4):
        alone = cls(model, reduction="none", **options)(
            [[LISTS["query"][i]], [LISTS["docs"][i]]], [labels[i]]
        )
        torch.testing.assert_close(per_query[i : i + 1], alone.detach(), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", ["approx_ndcg", "lambda", "listmle", "ranknet"])
def test_cross_encoder_config_round_trip_and_citation(tiny_dir: Path, name: str):
    losses, torch = listwise_losses()
    cls, options, _ = losses[name]
    model = make_reranker(tiny_dir)
    loss = cls(model, activation_fn=torch.nn.Sigmoid(), mini_batch_size=5, **options)
    config = loss.get_config_dict()
    for key, value in options.items():
        assert config[key] == value, key
    assert config["activation_fn"] == "torch.nn.modules.activation.Sigmoid"
    assert config["mini_batch_size"] == 5
    again = cls(model, **config)
    assert again.get_config_dict() == config
    assert isinstance(again.activation_fn, torch.nn.Sigmoid)
    inputs, labels = [LISTS["query"], LISTS["docs"]], LISTS["labels"]
    with torch.no_grad():
        torch.testing.assert_close(again(inputs, labels), loss(inputs, labels))
    assert loss.citation.strip().startswith("@") and "year=" in loss.citation


def test_lambda_loss_takes_sentence_transformers_weighting_schemes(tiny_dir: Path):
    _, torch = listwise_losses()
    from sentence_transformers.cross_encoder import losses as st_losses

    from rankgrad.sentence_transformers import LambdaLoss

    model = make_reranker(tiny_dir)
    s, y, m = reference_padded(model, LISTS)
    inputs, labels = [LISTS["query"], LISTS["docs"]], LISTS["labels"]
    cases = [
        (st_losses.NDCGLoss2PPScheme(mu=5.0), "ndcg2pp", 5.0),
        (st_losses.NDCGLoss2Scheme(), "ndcg2", 10.0),
        (st_losses.NDCGLoss1Scheme(), "ndcg1", 10.0),
        (st_losses.LambdaRankScheme(), "lambdarank", 10.0),
        (st_losses.NoWeightingScheme(), "ranknet", 10.0),
        (None, "ranknet", 10.0),
    ]
    for scheme, weighting, mu in cases:
        loss = LambdaLoss(model, weighting_scheme=scheme, reduction_log="natural")
        assert (loss.weighting, loss.mu) == (weighting, mu)
        with torch.no_grad():
            value = loss(inputs, labels)
        want = rankgrad.lambda_loss(s, y, weighting=weighting, mu=mu, mask=m) * math.log(2.0)
        torch.testing.assert_close(value, want, rtol=1e-4, atol=1e-6)

    class Custom(st_losses.LambdaRankScheme):
        pass

    with pytest.raises(ValueError, match="weighting_scheme"):
        LambdaLoss(model, weighting_scheme=Custom())


def test_listmle_random_tie_order_and_errors(tiny_dir: Path):
    _, torch = listwise_losses()
    from rankgrad.sentence_transformers import ListMLELoss, RankNetLoss

    model = make_reranker(tiny_dir)
    distinct = {**LISTS, "labels": [[4, 1, 3, 2], [1, 0], [3, 0, 4, 1, 2], [1]]}
    inputs, labels = [distinct["query"], distinct["docs"]], distinct["labels"]
    with torch.no_grad():
        ordered = ListMLELoss(model)(inputs, labels)
        torch.manual_seed(0)
        shuffled = ListMLELoss(model, respect_input_order=False)(inputs, labels)
    torch.testing.assert_close(shuffled, ordered, rtol=1e-5, atol=1e-6)  # no tie: order is irrelevant
    with pytest.raises(ValueError, match="labels per query"):
        ListMLELoss(model)(inputs, [[1, 0]] * 4)
    with pytest.raises(ValueError, match="one list of labels"):
        RankNetLoss(model)(inputs, torch.tensor([1.0, 0.0, 1.0, 0.0]))
    with pytest.raises(ValueError, match="reduction_log"):
        RankNetLoss(model, reduction_log="ten")
    empty = RankNetLoss(model)([["w1", "w2"], [[], []]], [[], []])
    assert float(empty.detach()) == 0.0 and empty.requires_grad
    empty.backward()


@pytest.mark.parametrize("name", ["approx_ndcg", "lambda", "listmle", "ranknet"])
def test_cross_encoder_trainer_steps_lower_the_loss(tiny_dir: Path, tmp_path: Path, name: str):
    _trainer_deps()
    losses, torch = listwise_losses()
    from datasets import Dataset
    from sentence_transformers.cross_encoder import CrossEncoderTrainer, CrossEncoderTrainingArguments

    cls, options, _ = losses[name]
    model = make_reranker(tiny_dir)
    loss = cls(model, **options)
    queries, docs = corpus(24, seed=10)
    rows: Dict[str, list] = {"query": [], "docs": [], "labels": []}
    for i, q in enumerate(queries):  # the query's document, marked by w0, among 3 others: graded 2 / 0
        others = [docs[(i + k) % len(docs)] for k in (5, 11, 17)]
        rows["query"].append(q)
        rows["docs"].append([others[0], "w0 " + docs[i], *others[1:]])
        rows["labels"].append([0, 2, 0, 0])
    batch = [rows["query"][:8], rows["docs"][:8]], rows["labels"][:8]
    with torch.no_grad():
        before = float(loss(*batch))
    args = CrossEncoderTrainingArguments(
        output_dir=str(tmp_path),
        per_device_train_batch_size=8,
        max_steps=9,
        learning_rate=3e-3,
        lr_scheduler_type="constant",
        report_to="none",
        use_cpu=True,
        seed=0,
        disable_tqdm=True,
        save_strategy="no",
        logging_steps=1000,
    )
    CrossEncoderTrainer(model=model, args=args, train_dataset=Dataset.from_dict(rows), loss=loss).train()
    with torch.no_grad():
        after = float(loss(*batch))
    assert after < 0.8 * before, (before, after)


# ------------------------------------------------------------------------- lazy import

_BLOCK = textwrap.dedent(
    """
    import sys

    class _Block:
        def __init__(self, names):
            self.names = names

        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in self.names:
                raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)")
            return None

    sys.meta_path.insert(0, _Block(BLOCKED))
    """
)


def _run(blocked: List[str], body: str) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    root = str(Path(rankgrad.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([root, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    code = f"BLOCKED = {blocked!r}\n" + _BLOCK + textwrap.dedent(body)
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)


def test_import_rankgrad_does_not_import_sentence_transformers():
    res = _run(
        [],
        """
        import rankgrad
        rankgrad.approx_ranks  # the torch layer too, when torch is there
        try:
            import rankgrad.nn, rankgrad.negative_cache
        except ImportError:
            pass
        loaded = sorted(m for m in ("sentence_transformers", "transformers") if m in sys.modules)
        print("loaded:", loaded)
        """
        if _has("torch")
        else """
        import rankgrad
        loaded = sorted(m for m in ("sentence_transformers", "transformers") if m in sys.modules)
        print("loaded:", loaded)
        """,
    )
    assert res.returncode == 0, res.stderr
    assert "loaded: []" in res.stdout, res.stdout


@pytest.mark.parametrize("blocked", [["sentence_transformers"], ["torch"]])
def test_import_without_sentence_transformers_says_how_to_install(blocked: List[str]):
    res = _run(
        blocked,
        """
        import rankgrad
        try:
            import rankgrad.sentence_transformers
        except ImportError as e:
            print("ImportError:", e)
        else:
            print("imported")
        """,
    )
    assert res.returncode == 0, res.stderr
    assert "ImportError:" in res.stdout, res.stdout
    assert 'pip install "rankgrad[sentence-transformers]"' in res.stdout, res.stdout


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def test_docstring_examples():
    """The runnable examples (the padding helper's); the losses' examples need a model."""
    import doctest

    _st()
    from rankgrad.sentence_transformers import _cross_encoder

    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    for t in doctest.DocTestFinder(exclude_empty=True).find(_cross_encoder):
        runner.run(t)
    result = runner.summarize(verbose=False)
    assert result.attempted > 0 and result.failed == 0, result
