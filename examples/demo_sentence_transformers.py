"""A sentence-transformers dual encoder trained with and without rankgrad's negative cache.

A synthetic corpus where hard negatives matter: 2,000 documents in tight clusters of 25. A
document has 8 of its cluster's 12 words and 3 words of its own; a query has 3 of the cluster's
words and 2 of its document's own words, written in the query's own vocabulary (aliases the
encoder learns only from that document's queries). In a batch of 16 drawn from 80 clusters,
the other documents seldom share the query's cluster: once the clusters are apart, in-batch
negatives (sentence-transformers' MultipleNegativesRankingLoss) stop teaching the documents'
own words. A cache of 1024 earlier documents holds about a dozen of each cluster, which
NegativeCacheRankingLoss samples in proportion to their score, and they keep teaching them.

Both runs train the same tiny BERT (built here, no download) with SentenceTransformerTrainer
for the same steps and print recall@10 of held-out queries over the whole corpus, and the time
per step.

    python examples/demo_sentence_transformers.py     # needs rankgrad[sentence-transformers]
                                                      # and sentence-transformers[train]
"""

from __future__ import annotations

import inspect
import os
import random
import tempfile
import time
import warnings

import torch
import torch.nn.functional as F

warnings.filterwarnings("ignore")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from datasets import Dataset  # noqa: E402
from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer  # noqa: E402
from sentence_transformers import SentenceTransformerTrainingArguments as Args  # noqa: E402
from sentence_transformers import __version__ as st_version  # noqa: E402
from transformers import BertConfig, BertModel, BertTokenizerFast  # noqa: E402
from transformers.utils import logging as hf_logging  # noqa: E402

from rankgrad.sentence_transformers import NegativeCacheRankingLoss  # noqa: E402

try:  # sentence-transformers >= 6
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
except ImportError:
    from sentence_transformers.losses import MultipleNegativesRankingLoss
    from sentence_transformers.models import Pooling, Transformer

hf_logging.set_verbosity_error()
torch.set_num_threads(int(os.environ.get("THREADS", "1")))  # tiny matrices: one thread is fastest
STEPS = int(os.environ.get("STEPS", "400"))
CLUSTERS, PER_CLUSTER = 80, 25
CLUSTER_WORDS, DOC_CLUSTER_WORDS, OWN = 12, 8, 3  # a cluster's words, how many a document has, its own
BATCH, CACHE, QUERIES_PER_DOC = 16, 1024, 4

# A document: 8 of its cluster's 12 words and 3 words of its own, d<i>x<k>. A query: 3 of the
# cluster's words, and 2 of its document's own words written q<i>x<k> (an alias the encoder has
# to learn, from that document's queries only).
rng = random.Random(0)
cluster_words = [[f"c{c}x{j}" for j in range(CLUSTER_WORDS)] for c in range(CLUSTERS)]
N_DOCS = CLUSTERS * PER_CLUSTER
docs = [
    " ".join(
        rng.sample(cluster_words[i // PER_CLUSTER], DOC_CLUSTER_WORDS) + [f"d{i}x{k}" for k in range(OWN)]
    )
    for i in range(N_DOCS)
]


def query(i: int) -> str:
    words = rng.sample(cluster_words[i // PER_CLUSTER], 3) + [f"q{i}x{k}" for k in rng.sample(range(OWN), 2)]
    rng.shuffle(words)
    return " ".join(words)


train_pairs = [(query(i), docs[i]) for _ in range(QUERIES_PER_DOC) for i in range(N_DOCS)]
set_of_train = set(train_pairs)
held_out = rng.sample(range(N_DOCS), 500)
test_queries = []
for i in held_out:  # a query of the same document that training never saw
    q = query(i)
    while (q, docs[i]) in set_of_train:
        q = query(i)
    test_queries.append(q)


def tiny_encoder(folder: str) -> SentenceTransformer:
    words = [w for ws in cluster_words for w in ws] + [
        f"{p}{i}x{k}" for p in "dq" for i in range(N_DOCS) for k in range(OWN)
    ]
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]
    if "vocab" in inspect.signature(BertTokenizerFast.__init__).parameters:  # transformers >= 5
        tok = BertTokenizerFast(vocab={t: i for i, t in enumerate(tokens)}, do_lower_case=True)
    else:
        with open(os.path.join(folder, "vocab.txt"), "w") as f:
            f.write("\n".join(tokens) + "\n")
        tok = BertTokenizerFast(vocab_file=os.path.join(folder, "vocab.txt"), do_lower_case=True)
    config = BertConfig(
        vocab_size=len(tokens),
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=128,
        max_position_embeddings=32,
    )
    torch.manual_seed(0)
    BertModel(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    transformer = Transformer(folder, max_seq_length=16)
    return SentenceTransformer(modules=[transformer, Pooling(config.hidden_size, "mean")], device="cpu")


def recall_at_10(model: SentenceTransformer) -> float:
    with torch.no_grad():
        d = F.normalize(model.encode(docs, batch_size=256, convert_to_tensor=True), dim=1)
        q = F.normalize(model.encode(test_queries, batch_size=256, convert_to_tensor=True), dim=1)
    top = (q @ d.T).topk(10, dim=1).indices
    return (top == torch.tensor(held_out)[:, None]).any(dim=1).float().mean().item()


def train(use_cache: bool, folder: str) -> tuple:
    model = tiny_encoder(folder)
    if use_cache:
        loss = NegativeCacheRankingLoss(model, cache_size=CACHE, scale=20.0)
        callbacks = [loss.checkpoint_callback]
    else:
        loss, callbacks = MultipleNegativesRankingLoss(model, scale=20.0), []
    args = Args(
        output_dir=os.path.join(folder, "out"),
        per_device_train_batch_size=BATCH,
        max_steps=STEPS,
        learning_rate=2e-3,
        warmup_steps=20,
        report_to="none",
        use_cpu=True,
        seed=0,
        disable_tqdm=True,
        save_strategy="no",
        logging_steps=10**6,
        dataloader_drop_last=True,
    )
    data = Dataset.from_dict({"anchor": [q for q, _ in train_pairs], "positive": [d for _, d in train_pairs]})
    trainer = SentenceTransformerTrainer(
        model=model, args=args, train_dataset=data, loss=loss, callbacks=callbacks
    )
    start = time.perf_counter()
    trainer.train()
    per_step = (time.perf_counter() - start) / STEPS
    return recall_at_10(model), per_step


if __name__ == "__main__":
    print(
        f"sentence-transformers {st_version}; {len(docs)} documents in {CLUSTERS} clusters of "
        f"{PER_CLUSTER}; {len(test_queries)} held-out queries; batch {BATCH}, {STEPS} steps",
        flush=True,
    )
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, use_cache in (
            ("in-batch (MultipleNegativesRankingLoss)", False),
            (f"negative cache {CACHE}", True),
        ):
            folder = os.path.join(tmp, "cache" if use_cache else "inbatch")
            os.makedirs(folder)
            recall, per_step = train(use_cache, folder)
            rows.append((name, recall, per_step))
            print(f"  {name}: recall@10 {recall:.3f}, {1000 * per_step:.1f} ms/step", flush=True)
    base = rows[0][2]
    print("\n| negatives | recall@10 | ms / step | time vs in-batch |\n|---|---|---|---|")
    for name, recall, per_step in rows:
        print(f"| {name} | {recall:.3f} | {1000 * per_step:.1f} | {per_step / base:.2f}x |")
