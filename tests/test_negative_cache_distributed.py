"""The sharded negative cache (distributed=True) with two gloo processes on CPU.

One spawn runs every scenario; each rank saves what it saw and the tests below check it
against a single process holding the whole cache. Chi-square thresholds are the 1e-4
upper quantile, with a fixed seed (deterministic).
"""

import datetime
import os
import time

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from scipy import stats

from rankgrad.negative_cache import CacheClassificationLoss, CacheLossHandler, CacheManager, NegativeCache

WORLD = 2
SHARD = 5  # slots per rank; the whole cache has WORLD * SHARD
D = 4
N_DRAWS = (6000, 4000)  # queries per rank: uneven on purpose
HSIZE = 10  # the handler scenario's shard size
H_BATCH = (3, 5)  # its second step's batch size per rank
FILLED = [0, 1, 2, 3]  # local slots filled on each shard; slot 4 stays empty
X_POS = [0, 2, 7]  # exclude_keys scenario: query row i's positive is document X_POS[i % 3]


def tables():
    g = torch.Generator().manual_seed(123)
    table = torch.randn(40, D, generator=g, dtype=torch.float64) * 0.8
    query = torch.randn(1, D, generator=g, dtype=torch.float64)
    return table, query, table + 0.5  # table2: the document network after "training"


def shard_ids(rank):
    """The item ids held by rank's shard, local slot order (global slot = rank * SHARD + slot)."""
    return [10 * rank + i for i in FILLED]


def specs():
    return {"id": ((), torch.int64), "embedding": ((D,), torch.float64)}


def xspecs():
    """With a "doc" field, id % 10: document d is held once by each shard (ids d and 10 + d)."""
    return {"id": ((), torch.int64), "doc": ((), torch.int64), "embedding": ((D,), torch.float64)}


def _worker(rank, init_file, out_dir):
    dist.init_process_group(
        "gloo",
        init_method=f"file://{init_file}",
        rank=rank,
        world_size=WORLD,
        timeout=datetime.timedelta(seconds=60),
    )
    try:
        torch.set_num_threads(1)
        table, query, table2 = tables()
        lookup = lambda d: table[d["id"]]  # noqa: E731
        m = CacheManager(specs(), cache_size=SHARD)
        ids = torch.tensor(shard_ids(rank))
        cache = m.update_cache(m.init_cache(), new_items={"id": ids, "embedding": table[ids]})
        n = N_DRAWS[rank]
        q = query.repeat(n, 1)
        result = {}
        for name, top_k in (("full", None), ("top3", 3)):
            loss = CacheClassificationLoss(
                "embedding",
                ("id",),
                top_k=top_k,
                reduction="none",
                generator=torch.Generator().manual_seed(1000 + rank),
                distributed=True,
            )
            out = loss(lookup, q, table[[30]].repeat(n, 1), cache)
            got = out.updated_item_indices
            owner, slot = got // SHARD, got % SHARD
            expected_ids = torch.tensor([shard_ids(int(o))[int(s)] for o, s in zip(owner[:50], slot[:50])])
            result[name] = {
                "indices": got,
                "interpretable": out.interpretable_loss[:1],
                "data_ok": bool(torch.equal(out.updated_item_data["embedding"][:50], table[expected_ids])),
                "staleness": out.staleness.abs().max(),
            }

        # exclude_keys: each query leaves out the slots (on both shards) of its positive's doc.
        xm = CacheManager(xspecs(), cache_size=SHARD)
        xc = xm.update_cache(xm.init_cache(), new_items={"id": ids, "doc": ids % 10, "embedding": table[ids]})
        pos_docs = torch.tensor(X_POS)[torch.arange(n) % len(X_POS)]
        for name, top_k in (("excl", None), ("excl_top3", 3)):
            loss = CacheClassificationLoss(
                "embedding",
                ("id",),
                top_k=top_k,
                reduction="none",
                generator=torch.Generator().manual_seed(2000 + rank),
                distributed=True,
                exclude_keys=("doc",),
            )
            out = loss(lookup, q, table[[30]].repeat(n, 1), xc, pos_doc_data={"doc": pos_docs})
            result[name] = {"indices": out.updated_item_indices, "interpretable": out.interpretable_loss[:3]}
        # Every filled slot of both shards holds document 5: queries of positive 5 have no
        # candidate left (losses 0), the others sample as usual.
        five = xm.update_cache(
            xm.init_cache(), new_items={"id": ids, "doc": torch.full_like(ids, 5), "embedding": table[ids]}
        )
        loss = CacheClassificationLoss(
            "embedding",
            ("id",),
            reduction="none",
            generator=torch.Generator().manual_seed(3000 + rank),
            distributed=True,
            exclude_keys=("doc",),
        )
        qn = query.repeat(4, 1).requires_grad_(True)
        out = loss(
            lookup, qn, table[[30]].repeat(4, 1), five, pos_doc_data={"doc": torch.tensor([5, 6, 5, 6])}
        )
        got = out.updated_item_indices
        owner, slot = got // SHARD, got % SHARD
        result["none_left"] = {
            "training": out.training_loss.detach(),
            "interpretable": out.interpretable_loss,
            "grad": torch.autograd.grad(out.training_loss[[0, 2]].sum(), qn)[0],
            "slots_filled": all(int(s) in FILLED for s in slot),
            "data_ok": bool(
                torch.equal(
                    out.updated_item_data["embedding"],
                    table[torch.tensor([shard_ids(int(o))[int(s)] for o, s in zip(owner, slot)])],
                )
            ),
        }

        # The handler: fill, then one step whose refreshes must land on the owning rank.
        loss = CacheClassificationLoss(
            "embedding",
            ("id",),
            generator=torch.Generator().manual_seed(77 + rank),
            distributed=True,
        )
        h = CacheLossHandler(CacheManager(specs(), cache_size=HSIZE), loss)
        first = torch.tensor([100 * rank + i for i in range(3)])
        h(lookup, query.repeat(3, 1), table[first % 40], {"id": first})
        b = H_BATCH[rank]
        gq = torch.Generator().manual_seed(rank)
        qs = 0.1 * torch.randn(b, D, generator=gq, dtype=torch.float64)  # sampling is ~uniform
        new = torch.tensor([100 * rank + 50 + i for i in range(b)])
        out = h(lambda d: table2[d["id"] % 40], qs, table[new % 40], {"id": new})
        result["handler"] = {
            "indices": out.updated_item_indices,
            "ids": h.cache.data["id"].clone(),
            "embedding": h.cache.data["embedding"].clone(),
            "age": h.cache.age.clone(),
            "filled": h.cache.filled.clone(),
        }

        # Each rank checkpoints its own shard; loading another rank's shard is refused.
        state = h.state_dict()
        restored = CacheLossHandler(CacheManager(specs(), cache_size=HSIZE), loss)
        restored.load_state_dict(state)
        wrong = {**state, "shard": {"rank": 1 - rank, "world_size": WORLD}}
        try:
            restored.load_state_dict(wrong)
            err = None
        except ValueError as e:
            err = str(e)
        result["state"] = {
            "shard": state["shard"],
            "same": all(torch.equal(restored.cache.data[k], h.cache.data[k]) for k in h.cache.data)
            and torch.equal(restored.cache.age, h.cache.age),
            "wrong_rank": err,
        }

        # Bad input on one rank: every rank raises, and the next step runs normally.
        errors = []
        wrapped = lambda d: table[d["id"] % 40]  # noqa: E731
        big = HSIZE + 1 if rank == 1 else 2
        qb = torch.zeros(big, D, dtype=torch.float64)
        ids_b = torch.arange(big)
        for bad_step in (
            lambda: h(wrapped, qb, table[ids_b], {"id": ids_b}),  # rank 1: batch > cache_size
            lambda: h(wrapped, qs[:, : D - rank], table[new % 40], {"id": new}),  # rank 1: wrong D
        ):
            try:
                bad_step()
                errors.append(None)
            except ValueError as e:
                errors.append(str(e))
        out = h(wrapped, qs, table[new % 40], {"id": new})
        result["refused"] = {"errors": errors, "then": out.updated_item_indices.shape[0]}
        torch.save(result, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    if not (dist.is_available() and dist.is_gloo_available()):
        pytest.skip("torch.distributed with gloo is not available")
    tmp = tmp_path_factory.mktemp("negcache_dist")
    ctx = mp.start_processes(
        _worker, args=(str(tmp / "init"), str(tmp)), nprocs=WORLD, join=False, start_method="spawn"
    )
    deadline = time.monotonic() + 180
    while not ctx.join(timeout=5):
        if time.monotonic() > deadline:
            for p in ctx.processes:
                if p.is_alive():
                    p.kill()
            pytest.fail("the gloo workers did not finish within 180 s")
    return [torch.load(tmp / f"rank{r}.pt") for r in range(WORLD)]


def whole_cache_logits():
    """What one process holding every shard would score: global slot -> logit (-inf if empty)."""
    table, query, _ = tables()
    logits = torch.full((WORLD * SHARD,), float("-inf"), dtype=torch.float64)
    for r in range(WORLD):
        for s, i in zip(FILLED, shard_ids(r)):
            logits[r * SHARD + s] = (query[0] * table[i]).sum()
    return logits


def check_distribution(indices, probs):
    counts = torch.bincount(indices, minlength=len(probs)).double()
    support = probs > 0
    assert counts[~support].sum() == 0, "sampled a slot outside the support"
    n = counts.sum()
    expected = n * probs[support]
    stat = float(((counts[support] - expected) ** 2 / expected).sum())
    critical = stats.chi2.ppf(1 - 1e-4, df=int(support.sum()) - 1)
    assert stat < critical, (counts.tolist(), expected.tolist())


def test_sharded_sampling_follows_softmax_over_the_whole_cache(results):
    indices = torch.cat([r["full"]["indices"] for r in results])
    assert indices.shape == (sum(N_DRAWS),)
    check_distribution(indices, torch.softmax(whole_cache_logits(), 0))
    assert all(r["full"]["data_ok"] for r in results)  # the winner's document came along
    assert all(float(r["full"]["staleness"]) == 0.0 for r in results)


def test_sharded_top_k_is_exact_over_the_whole_cache(results):
    logits = whole_cache_logits()
    top = logits.topk(3).indices
    assert {int(i) // SHARD for i in top} == {0, 1}  # the top 3 span both shards
    masked = torch.full_like(logits, float("-inf"))
    masked[top] = logits[top]
    check_distribution(torch.cat([r["top3"]["indices"] for r in results]), torch.softmax(masked, 0))


def test_sharded_interpretable_loss_equals_one_process_with_the_whole_cache(results):
    table, query, _ = tables()
    s_pos = (query[0] * table[30]).sum()
    whole = torch.cat([s_pos[None], whole_cache_logits()])
    want = -torch.log_softmax(whole, 0)[0]
    for r in results:
        torch.testing.assert_close(r["full"]["interpretable"][0], want)


def test_refreshed_embeddings_arrive_on_the_owning_rank(results):
    table, _, table2 = tables()
    refreshed = torch.cat([r["handler"]["indices"] for r in results])
    assert refreshed.shape == (sum(H_BATCH),)
    assert set((refreshed // HSIZE).tolist()) == {0, 1}, "the test needs refreshes that cross ranks"
    for rank, r in enumerate(results):
        h = r["handler"]
        mine = {int(i) % HSIZE for i in refreshed if int(i) // HSIZE == rank}
        b = H_BATCH[rank]
        new = [100 * rank + 50 + i for i in range(b)]
        assert h["ids"].tolist() == [100 * rank + i for i in range(3)] + new + [0] * (HSIZE - 3 - b)
        assert h["filled"].tolist() == [True] * (3 + b) + [False] * (HSIZE - 3 - b)
        for slot in range(3):
            i = int(h["ids"][slot]) % 40
            want = table2[i] if slot in mine else table[i]
            torch.testing.assert_close(h["embedding"][slot], want)
            assert int(h["age"][slot]) == (0 if slot in mine else 1)
        torch.testing.assert_close(h["embedding"][3 : 3 + b], table[torch.tensor(new) % 40])


def test_each_rank_checkpoints_its_own_shard(results):
    for rank, r in enumerate(results):
        assert r["state"]["shard"] == {"rank": rank, "world_size": WORLD}
        assert r["state"]["same"]
        assert "state_dict['shard']" in r["state"]["wrong_rank"]


def test_bad_input_on_one_rank_fails_every_rank_without_a_hang(results):
    e0, e1 = results[0]["refused"]["errors"], results[1]["refused"]["errors"]
    assert f"pos_doc_embeddings has {HSIZE + 1} rows, more than cache_size={HSIZE}" in e1[0]
    assert "query_embeddings has shape" in e1[1]
    for msg in e0:  # rank 0's inputs were fine; it names the rank that refused
        assert msg is not None and "rank(s) [1] were refused" in msg
    for rank, r in enumerate(results):
        assert r["refused"]["then"] == H_BATCH[rank]  # the collectives are still in step


# ---------------------------------------------------------------------------------------
# exclude_keys over the shards


def whole_xcache():
    """One process's cache holding every shard, global slot r * SHARD + s = shard r's slot s."""
    table, _, _ = tables()
    c = WORLD * SHARD
    ids = torch.zeros(c, dtype=torch.int64)
    filled = torch.zeros(c, dtype=torch.bool)
    for r in range(WORLD):
        for s, i in zip(FILLED, shard_ids(r)):
            ids[r * SHARD + s], filled[r * SHARD + s] = i, True
    data = {"id": ids, "doc": ids % 10, "embedding": table[ids]}
    return NegativeCache(data, torch.zeros(c, dtype=torch.int64), filled)


@pytest.mark.parametrize("name, top_k", [("excl", None), ("excl_top3", 3)])
def test_sharded_exclusion_agrees_with_one_process(results, name, top_k):
    """Per positive: the sharded draws follow the softmax over the union less the slots of that
    positive's document (on both shards; top 3 of the rest), and interpretable_loss equals one
    process's holding the whole cache."""
    table, query, _ = tables()
    whole = whole_xcache()
    one = CacheClassificationLoss("embedding", ("id",), top_k=top_k, reduction="none", exclude_keys=("doc",))
    pos_docs = torch.tensor(X_POS)
    ref = one(
        lambda d: table[d["id"]],
        query.repeat(3, 1),
        table[[30]].repeat(3, 1),
        whole,
        pos_doc_data={"doc": pos_docs},
    )
    logits = whole_cache_logits()
    for g, doc in enumerate(X_POS):
        masked = logits.masked_fill(whole.data["doc"] == doc, float("-inf"))
        if top_k is not None:
            keep = masked.topk(top_k).indices
            masked = torch.full_like(masked, float("-inf")).index_copy(0, keep, masked[keep])
        assert int(torch.isfinite(masked).sum()) == (8 - 2 * (doc < 4) if top_k is None else top_k)
        idx = torch.cat([r[name]["indices"][g :: len(X_POS)] for r in results])
        check_distribution(idx, torch.softmax(masked, 0))
        for r in results:
            torch.testing.assert_close(r[name]["interpretable"][g], ref.interpretable_loss[g])
    s_pos = (query[0] * table[30]).sum()
    for g, doc in enumerate(X_POS):  # and the brute-force value
        masked = logits.masked_fill(whole.data["doc"] == doc, float("-inf"))
        if top_k is not None:
            masked = masked.topk(top_k).values
        want = -torch.log_softmax(torch.cat([s_pos[None], masked]), 0)[0]
        torch.testing.assert_close(ref.interpretable_loss[g], want)


def test_sharded_query_with_no_candidate_left_has_no_loss(results):
    for r in results:
        out = r["none_left"]
        assert out["training"][[0, 2]].tolist() == [0.0, 0.0]
        assert out["interpretable"][[0, 2]].tolist() == [0.0, 0.0]
        assert bool((out["interpretable"][[1, 3]] > 0).all())
        assert not out["grad"].any()
        assert out["slots_filled"] and out["data_ok"]
