"""rankgrad.negative_cache in one process (SPEC section 7).

Statistical tests use a fixed seed, so they are deterministic. Each is a Pearson
chi-square test at the 1e-4 upper quantile plus a 5-sigma bound on every cell's
frequency, so a correct sampler would fail it for about 1 seed in 1,000 or fewer.
"""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from rankgrad.negative_cache import (
    CacheClassificationLoss,
    CacheLossHandler,
    CacheLossReturn,
    CacheManager,
    NegativeCache,
)

D = 4


def specs(d=D):
    return {"id": ((), torch.int64), "embedding": ((d,), torch.float32)}


def items(ids, table):
    ids = torch.as_tensor(ids, dtype=torch.int64)
    return {"id": ids, "embedding": table[ids]}


def lookup(table):
    return lambda data: table[data["id"]]


def chi_square_check(counts, probs, alpha=1e-4):
    """Pearson chi-square goodness of fit plus a per-cell 5-sigma bound on the frequency."""
    counts = torch.as_tensor(counts, dtype=torch.float64)
    probs = torch.as_tensor(probs, dtype=torch.float64)
    n = counts.sum()
    expected = n * probs
    stat = float(((counts - expected) ** 2 / expected).sum())
    critical = stats.chi2.ppf(1 - alpha, df=len(probs) - 1)
    assert stat < critical, (stat, critical, counts.tolist(), expected.tolist())
    bound = 5 * torch.sqrt(probs * (1 - probs) / n)
    assert bool(((counts / n - probs).abs() <= bound).all()), (counts / n, probs)


# ---------------------------------------------------------------------------------------
# The update rule


def test_new_cache_is_empty_with_equal_ages_on_its_device():
    cache = CacheManager(specs(), cache_size=5).init_cache()
    assert isinstance(cache, NegativeCache)
    assert cache.data["id"].shape == (5,) and cache.data["embedding"].shape == (5, D)
    assert cache.data["embedding"].dtype == torch.float32
    assert cache.age.dtype == torch.int64 and cache.age.tolist() == [0] * 5
    assert cache.filled.tolist() == [False] * 5
    assert cache.device == torch.device("cpu")


def test_first_inserts_fill_slots_in_order_then_evict_oldest_lowest_index_first():
    table = torch.randn(50, D)
    m = CacheManager(specs(), cache_size=5)
    c = m.update_cache(m.init_cache(), new_items=items([10, 11, 12], table))
    assert c.data["id"].tolist() == [10, 11, 12, 0, 0]
    assert c.filled.tolist() == [True, True, True, False, False]
    assert c.age.tolist() == [0, 0, 0, 1, 1]
    assert torch.equal(c.data["embedding"][:3], table[10:13])

    c = m.update_cache(c, new_items=items([13], table))  # the empty slots are the oldest
    assert c.data["id"].tolist() == [10, 11, 12, 13, 0]
    assert c.age.tolist() == [1, 1, 1, 0, 2]
    c = m.update_cache(c, new_items=items([14, 15], table))  # slot 4 (age 2), then slot 0 (tie, lowest)
    assert c.data["id"].tolist() == [15, 11, 12, 13, 14]
    assert c.filled.all()
    assert c.age.tolist() == [0, 2, 2, 1, 0]
    c = m.update_cache(c, new_items=items([16, 17], table))  # ties at age 2: slot 1 then 2
    assert c.data["id"].tolist() == [15, 16, 17, 13, 14]
    assert c.age.tolist() == [1, 0, 0, 2, 1]


def test_eviction_follows_age_then_index_against_a_sorted_reference():
    g = torch.Generator().manual_seed(3)
    C = 300
    m = CacheManager(specs(), cache_size=C)
    for _ in range(20):
        age = torch.randint(0, 4, (C,), generator=g)  # many ties
        cache = NegativeCache(
            {"id": torch.arange(C), "embedding": torch.zeros(C, D)},
            age.clone(),
            torch.ones(C, dtype=torch.bool),
        )
        n = int(torch.randint(1, C, (1,), generator=g))
        new = torch.arange(1000, 1000 + n)
        out = m.update_cache(cache, new_items={"id": new, "embedding": torch.ones(n, D)})
        order = sorted(range(C), key=lambda i: (-int(age[i]), i))[:n]
        want_ids = list(range(C))
        want_age = (age + 1).tolist()
        for item, slot in zip(new.tolist(), order):
            want_ids[slot] = item
            want_age[slot] = 0
        assert out.data["id"].tolist() == want_ids
        assert out.age.tolist() == want_age
        assert cache.age.tolist() == age.tolist()  # not in place by default


def test_lru_refresh_makes_a_slot_youngest_and_fifo_does_not():
    table = torch.randn(50, D)
    fresh = torch.full((1, D), 7.0)
    for use_lru in (True, False):
        m = CacheManager(specs(), cache_size=3, use_lru=use_lru)
        c = m.init_cache()
        for i in range(3):
            c = m.update_cache(c, new_items=items([i], table))
        assert c.age.tolist() == [2, 1, 0]
        c = m.update_cache(
            c,
            new_items=items([9], table),
            updated_item_indices=torch.tensor([0]),
            updated_item_data={"embedding": fresh},
        )
        if use_lru:  # slot 0 was refreshed, so slot 1 is the oldest and goes
            assert c.data["id"].tolist() == [0, 9, 2]
            assert torch.equal(c.data["embedding"][0], fresh[0])
            assert c.age.tolist() == [0, 0, 1]
        else:  # refreshed or not, slot 0 is the oldest
            assert c.data["id"].tolist() == [9, 1, 2]
            assert c.age.tolist() == [0, 2, 1]


def test_refresh_last_write_wins_ignores_empty_slots_and_masks():
    m = CacheManager(specs(), cache_size=4)
    c = m.update_cache(m.init_cache(), new_items=items([0, 1], torch.zeros(5, D)))
    vals = torch.arange(4 * D, dtype=torch.float32).view(4, D)
    c2 = m.update_cache(
        c, updated_item_indices=torch.tensor([1, 0, 1, 3]), updated_item_data={"embedding": vals}
    )
    assert torch.equal(c2.data["embedding"][1], vals[2])  # the last write to slot 1
    assert torch.equal(c2.data["embedding"][0], vals[1])
    assert torch.equal(c2.data["embedding"][3], torch.zeros(D))  # slot 3 is empty: dropped
    assert c2.filled.tolist() == [True, True, False, False]
    assert c2.age.tolist() == [0, 0, 2, 2]
    c3 = m.update_cache(
        c,
        updated_item_indices=torch.tensor([0, 1]),
        updated_item_data={"embedding": vals[:2]},
        updated_item_mask=torch.tensor([False, True]),
        new_items=items([3, 4], torch.ones(5, D)),
        new_items_mask=torch.tensor([False, True]),
    )
    assert torch.equal(c3.data["embedding"][0], torch.zeros(D))
    assert torch.equal(c3.data["embedding"][1], vals[1])
    assert c3.data["id"].tolist() == [0, 1, 4, 0]
    assert c3.filled.tolist() == [True, True, True, False]


def test_inplace_update_changes_the_given_tensors():
    m = CacheManager(specs(), cache_size=3)
    c = m.init_cache()
    age = c.age
    out = m.update_cache(c, new_items=items([2], torch.ones(3, D)), inplace=True)
    assert out is c and out.age is age
    assert age.tolist() == [0, 1, 1] and c.filled.tolist() == [True, False, False]


# ---------------------------------------------------------------------------------------
# Sampling


def cache_with(table, ids, size):
    m = CacheManager(specs(table.shape[1]), cache_size=size)
    return m.update_cache(m.init_cache(), new_items=items(ids, table))


def draw(cache, table, q, n, **kw):
    """`n` samples per query row of q (q repeated n times); returns slots [n, B]."""
    loss = CacheClassificationLoss("embedding", ("id",), reduction="none", **kw)
    out = loss(lookup(table), q.repeat(n, 1), torch.zeros(n * q.shape[0], q.shape[1]), cache)
    return out.updated_item_indices.view(n, q.shape[0])


@pytest.mark.parametrize("transform", [None, lambda s: 2.0 * s])
def test_samples_follow_softmax_over_filled_slots(transform):
    g = torch.Generator().manual_seed(0)
    table = torch.randn(10, D, generator=g) * 0.7
    cache = cache_with(table, [3, 1, 4, 7, 5, 9], size=9)  # slots 6..8 stay empty
    q = torch.randn(1, D, generator=g)
    n = 30000
    slots = draw(cache, table, q, n, score_transform=transform, generator=torch.Generator().manual_seed(1))
    counts = torch.bincount(slots.flatten(), minlength=9)
    assert counts[6:].sum() == 0  # empty slots are never sampled
    s = q @ table[[3, 1, 4, 7, 5, 9]].T
    s = s if transform is None else transform(s)
    chi_square_check(counts[:6], torch.softmax(s[0], 0))


def test_large_caches_are_sampled_in_two_stages_with_the_same_distribution():
    """Above 1024 candidates a row is sampled block by block (1500 slots: 39 blocks of 39,
    the last one padded); the draw must still follow the softmax over every filled slot."""
    from rankgrad.negative_cache import _sampling

    size, filled = 1500, 1480
    assert size > _sampling._FLAT_SAMPLE_MAX
    g = torch.Generator().manual_seed(8)
    table = 0.25 * torch.randn(filled, D, generator=g)
    cache = cache_with(table, list(range(filled)), size=size)
    q = torch.randn(1, D, generator=g)
    gen = torch.Generator().manual_seed(9)
    slots = torch.cat([draw(cache, table, q, 10000, generator=gen).flatten() for _ in range(4)])
    counts = torch.bincount(slots, minlength=size)
    assert counts[filled:].sum() == 0
    probs = torch.softmax((q @ table.T)[0].double(), 0)
    assert float(probs.min()) * slots.numel() > 5  # chi-square needs expected counts >= 5
    chi_square_check(counts[:filled], probs)


def test_top_k_draws_only_each_querys_top_k_by_softmax():
    g = torch.Generator().manual_seed(5)
    table = torch.randn(12, D, generator=g)
    ids = list(range(12))
    cache = cache_with(table, ids, size=12)
    q = torch.randn(2, D, generator=g)
    n = 20000
    slots = draw(cache, table, q, n, top_k=3, generator=torch.Generator().manual_seed(2))
    s = q @ table.T
    for b in range(2):
        top = s[b].topk(3).indices
        counts = torch.bincount(slots[:, b], minlength=12)
        others = torch.ones(12, dtype=torch.bool)
        others[top] = False
        assert counts[others].sum() == 0
        chi_square_check(counts[top], torch.softmax(s[b, top], 0))
    # the two queries' top 3 differ, so "per query" is really tested
    assert set(s[0].topk(3).indices.tolist()) != set(s[1].topk(3).indices.tolist())


def test_top_k_larger_than_the_filled_slots():
    g = torch.Generator().manual_seed(6)
    table = torch.randn(5, D, generator=g)
    cache = cache_with(table, [0, 1, 2], size=8)
    q = torch.randn(1, D, generator=g)
    slots = draw(cache, table, q, 20000, top_k=6, generator=torch.Generator().manual_seed(3))
    counts = torch.bincount(slots.flatten(), minlength=8)
    assert counts[3:].sum() == 0
    chi_square_check(counts[:3], torch.softmax((q @ table[:3].T)[0], 0))


def test_generator_makes_sampling_reproducible():
    table = torch.randn(8, D, generator=torch.Generator().manual_seed(0))
    cache = cache_with(table, list(range(8)), size=8)
    q = torch.randn(5, D, generator=torch.Generator().manual_seed(1))
    a = draw(cache, table, q, 50, generator=torch.Generator().manual_seed(42))
    b = draw(cache, table, q, 50, generator=torch.Generator().manual_seed(42))
    c = draw(cache, table, q, 50, generator=torch.Generator().manual_seed(43))
    assert torch.equal(a, b) and not torch.equal(a, c)


# ---------------------------------------------------------------------------------------
# Losses


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_losses_and_staleness_match_their_formulas(reduction):
    g = torch.Generator().manual_seed(11)
    table = torch.randn(10, D, generator=g, dtype=torch.float64)
    ids = [2, 5, 7, 8]
    m = CacheManager({"id": ((), torch.int64), "embedding": ((D,), torch.float64)}, cache_size=6)
    stale = table[ids] + 0.3 * torch.randn(4, D, generator=g, dtype=torch.float64)  # cached != fresh
    cache = m.update_cache(m.init_cache(), new_items={"id": torch.tensor(ids), "embedding": stale})
    scale = 1.5
    loss = CacheClassificationLoss(
        "embedding",
        ("id",),
        score_transform=lambda s: scale * s,
        reduction=reduction,
        generator=torch.Generator().manual_seed(0),
    )
    q = torch.randn(3, D, generator=g, dtype=torch.float64, requires_grad=True)
    pos = torch.randn(3, D, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.nn.Parameter(table.clone())
    out = loss(lambda d: w[d["id"]], q, pos, cache)
    assert isinstance(out, CacheLossReturn)

    slots = out.updated_item_indices
    assert slots.shape == (3,) and slots.dtype == torch.int64
    j_ids = cache.data["id"][slots]
    fresh = w[j_ids]
    s_pos = scale * (q * pos).sum(1)
    s_neg = scale * (q * fresh).sum(1)
    s_all = torch.cat([s_pos[:, None], scale * q @ stale.T], 1)
    p = torch.softmax(s_all, 1)[:, 0].detach()
    want_train = (1 - p) * (s_neg - s_pos)
    want_interp = -torch.log(p)
    want_stale = ((stale[slots] - table[j_ids]) ** 2).sum(1) / (table[j_ids] ** 2).sum(1)
    red = {"none": lambda x: x, "mean": lambda x: x.mean(), "sum": lambda x: x.sum()}[reduction]
    torch.testing.assert_close(out.training_loss, red(want_train))
    torch.testing.assert_close(out.interpretable_loss, red(want_interp.detach()))
    torch.testing.assert_close(out.staleness, red(want_stale))
    assert float(red(want_stale).sum()) > 0.01  # the cache really was stale
    torch.testing.assert_close(out.updated_item_data["embedding"], table[j_ids])
    assert not out.updated_item_data["embedding"].requires_grad

    grads = torch.autograd.grad(out.training_loss.sum(), (q, pos, w))
    want = torch.autograd.grad(red(want_train).sum(), (q, pos, w))
    for got, exp in zip(grads, want):
        torch.testing.assert_close(got, exp)
    assert grads[2].abs().sum() > 0  # gradient reached doc_network through s_neg


@pytest.mark.parametrize("transform", [None, lambda s: 3.0 * s])
def test_expected_gradient_is_the_full_softmax_cross_entropy_gradient(transform):
    """Fresh cache: mean over R draws of d training_loss / d q -> d(-log p)/d q.

    Per draw and query, the gradient is c (1 - p)(e_J - d_pos) (c = 1 or 3), so each
    component of the mean has standard deviation c (1 - p) std(e_J) / sqrt(R); the
    tolerance is 6 such standard deviations.
    """
    g = torch.Generator().manual_seed(21)
    c = 1.0 if transform is None else 3.0
    table = torch.randn(8, D, generator=g, dtype=torch.float64) * 0.6
    m = CacheManager({"id": ((), torch.int64), "embedding": ((D,), torch.float64)}, cache_size=10)
    cache = m.update_cache(m.init_cache(), new_items={"id": torch.arange(8), "embedding": table})
    q = torch.randn(3, D, generator=g, dtype=torch.float64)
    pos = torch.randn(3, D, generator=g, dtype=torch.float64)
    r = 20000
    qr = q.repeat(r, 1).requires_grad_(True)
    loss = CacheClassificationLoss(
        "embedding",
        ("id",),
        score_transform=transform,
        reduction="sum",
        generator=torch.Generator().manual_seed(7),
    )
    out = loss(lookup(table), qr, pos.repeat(r, 1), cache)
    assert float(out.staleness) == 0.0
    mean_grad = torch.autograd.grad(out.training_loss, qr)[0].view(r, 3, D).mean(0)

    qf = q.clone().requires_grad_(True)
    logits = c * torch.cat([(qf * pos).sum(1, keepdim=True), qf @ table.T], 1)
    full = -torch.log_softmax(logits, 1)[:, 0].sum()
    want = torch.autograd.grad(full, qf)[0]

    with torch.no_grad():
        p = torch.softmax(logits, 1)[:, 0]
        probs = torch.softmax(c * q @ table.T, 1)  # [3, 8]
        mean_e = probs @ table
        var_e = probs @ table**2 - mean_e**2
        sd = c * (1 - p)[:, None] * var_e.clamp_min(0).sqrt() / math.sqrt(r)
    err = (mean_grad - want).abs()
    assert bool((err <= 6 * sd + 1e-9).all()), (err, sd)
    assert float(want.abs().max()) > 20 * float(sd.max())  # the gradient is well resolved


def test_empty_cache_gives_zero_losses_and_refreshes_nothing():
    m = CacheManager(specs(), cache_size=4)
    loss = CacheClassificationLoss("embedding", ("id",))
    q = torch.randn(3, D, requires_grad=True)
    called = []
    out = loss(lambda d: called.append(1), q, torch.randn(3, D), m.init_cache())
    assert not called
    assert float(out.training_loss.detach()) == 0.0
    assert float(out.interpretable_loss) == 0.0 and float(out.staleness) == 0.0
    out.training_loss.backward()
    assert torch.equal(q.grad, torch.zeros(3, D))
    assert out.updated_item_indices.shape == (0,)
    assert out.updated_item_data["embedding"].shape == (0, D)


def test_low_precision_queries_score_in_float32():
    table = torch.randn(6, D)
    cache = cache_with(table, list(range(6)), size=6)
    q = torch.randn(3, D).to(torch.bfloat16).requires_grad_(True)
    loss = CacheClassificationLoss("embedding", ("id",))
    out = loss(lookup(table), q, torch.randn(3, D, dtype=torch.bfloat16), cache)
    assert out.training_loss.dtype == torch.float32
    out.training_loss.backward()
    assert q.grad.dtype == torch.bfloat16 and torch.isfinite(q.grad.float()).all()


# ---------------------------------------------------------------------------------------
# The handler


def test_handler_writes_back_refreshed_embeddings_and_enqueues_positives():
    g = torch.Generator().manual_seed(4)
    table = torch.randn(40, D, generator=g)
    m = CacheManager(specs(), cache_size=8)
    loss = CacheClassificationLoss("embedding", ("id",), generator=torch.Generator().manual_seed(0))
    h = CacheLossHandler(m, loss)
    assert h.cache.filled.sum() == 0
    q = torch.randn(3, D, generator=g, requires_grad=True)

    pos = table[[0, 1, 2]].clone().requires_grad_(True)
    out = h(lookup(table), q, pos, {"id": torch.tensor([0, 1, 2])})
    assert out.updated_item_indices.numel() == 0  # nothing to sample yet
    assert h.cache.data["id"][:3].tolist() == [0, 1, 2] and h.cache.filled.sum() == 3
    assert not h.cache.data["embedding"].requires_grad

    moved = table + 10.0  # the document network has changed since the items were cached
    out = h(lookup(moved), q, moved[[3, 4, 5]], {"id": torch.tensor([3, 4, 5])})
    out.training_loss.backward()
    refreshed = out.updated_item_indices.unique()
    assert refreshed.numel() >= 1 and bool((refreshed < 3).all())
    for slot in range(3):
        i = int(h.cache.data["id"][slot])
        want = moved[i] if slot in refreshed.tolist() else table[i]
        torch.testing.assert_close(h.cache.data["embedding"][slot], want)
        assert int(h.cache.age[slot]) == (0 if slot in refreshed.tolist() else 1)
    assert h.cache.data["id"][3:6].tolist() == [3, 4, 5]
    torch.testing.assert_close(h.cache.data["embedding"][3:6], moved[[3, 4, 5]])
    assert float(out.staleness) > 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_cache_stays_on_its_device():
    dev = torch.device("cuda")
    table = torch.randn(20, D, device=dev)
    m = CacheManager(specs(), cache_size=8)
    gen = torch.Generator(dev).manual_seed(0)
    loss = CacheClassificationLoss("embedding", ("id",), top_k=4, generator=gen)
    h = CacheLossHandler(m, loss, device=dev)
    q = torch.randn(3, D, device=dev, requires_grad=True)
    for step in range(3):
        ids = torch.arange(3 * step, 3 * step + 3, device=dev)
        out = h(lookup(table), q, table[ids], {"id": ids})
    out.training_loss.backward()
    assert all(v.device.type == "cuda" for v in h.cache.data.values())
    assert h.cache.age.device.type == "cuda" and out.updated_item_indices.device.type == "cuda"
    assert q.grad.abs().sum() > 0
    slots = draw(h.cache, table, q[:1].detach(), 20000, generator=torch.Generator(dev).manual_seed(1))
    counts = torch.bincount(slots.flatten().cpu(), minlength=8)
    filled = h.cache.filled.cpu()
    assert counts[~filled].sum() == 0
    s = (q[:1].detach() @ h.cache.data["embedding"].T).cpu()[0]
    chi_square_check(counts[filled], torch.softmax(s[filled].double(), 0))


# ---------------------------------------------------------------------------------------
# Bad input


def test_spec_without_the_embedding_key_is_refused():
    m = CacheManager({"id": ((), torch.int64), "emb": ((D,), torch.float32)}, cache_size=4)
    loss = CacheClassificationLoss("embedding", ("id",))
    with pytest.raises(ValueError, match="embedding_key 'embedding'"):
        CacheLossHandler(m, loss)
    with pytest.raises(ValueError, match="'embedding'.*embedding_key"):
        loss(lookup(torch.zeros(5, D)), torch.zeros(2, D), torch.zeros(2, D), m.init_cache())
    m2 = CacheManager({"embedding": ((D,), torch.float32)}, cache_size=4)
    with pytest.raises(ValueError, match="data_keys"):
        CacheLossHandler(m2, loss)


def test_new_items_of_the_wrong_shape_dtype_or_fields_are_refused():
    m = CacheManager(specs(), cache_size=4)
    c = m.init_cache()
    with pytest.raises(ValueError, match=r"new_items\['embedding'\] has shape \(2, 5\)"):
        m.update_cache(c, new_items={"id": torch.tensor([0, 1]), "embedding": torch.zeros(2, 5)})
    with pytest.raises(ValueError, match=r"new_items\['embedding'\] has 3 rows"):
        m.update_cache(c, new_items={"id": torch.tensor([0, 1]), "embedding": torch.zeros(3, D)})
    with pytest.raises(TypeError, match=r"new_items\['id'\] must be integer"):
        m.update_cache(c, new_items={"id": torch.zeros(2), "embedding": torch.zeros(2, D)})
    with pytest.raises(ValueError, match="new_items.*missing \\['id'\\]"):
        m.update_cache(c, new_items={"embedding": torch.zeros(2, D)})
    with pytest.raises(ValueError, match="new_items has 5 items, more than cache_size=4"):
        m.update_cache(c, new_items={"id": torch.arange(5), "embedding": torch.zeros(5, D)})
    with pytest.raises(ValueError, match="updated_item_indices must lie in"):
        m.update_cache(
            c, updated_item_indices=torch.tensor([4]), updated_item_data={"embedding": torch.zeros(1, D)}
        )
    with pytest.raises(ValueError, match="given together"):
        m.update_cache(c, updated_item_indices=torch.tensor([0]))
    with pytest.raises(ValueError, match="updated_item_data has fields \\['x'\\]"):
        m.update_cache(c, updated_item_indices=torch.tensor([0]), updated_item_data={"x": torch.zeros(1, D)})
    assert c.filled.sum() == 0 and c.age.tolist() == [0] * 4  # nothing half-applied


def test_a_cache_on_another_device_is_refused():
    m = CacheManager(specs(), cache_size=4)
    meta = m.init_cache(device="meta")
    assert meta.device.type == "meta"
    loss = CacheClassificationLoss("embedding", ("id",))
    with pytest.raises(ValueError, match="query_embeddings is on cpu but the cache is on meta"):
        loss(lookup(torch.zeros(5, D)), torch.zeros(2, D), torch.zeros(2, D), meta)
    with pytest.raises(ValueError, match=r"new_items\['id'\] is on cpu but the cache is on meta"):
        m.update_cache(meta, new_items=items([0], torch.zeros(2, D)))
    h = CacheLossHandler(m, loss, device="meta")
    with pytest.raises(ValueError, match="pos_doc_embeddings is on cpu but the cache is on meta"):
        h(lookup(torch.zeros(5, D)), torch.zeros(2, D), torch.zeros(2, D), {"id": torch.tensor([0, 1])})
    gen_loss = CacheClassificationLoss("embedding", ("id",), generator=torch.Generator())
    q = torch.zeros(2, D, device="meta")
    with pytest.raises(ValueError, match="generator is on cpu but the cache is on meta"):
        gen_loss(lookup(torch.zeros(5, D)), q, q, meta)


def test_bad_arguments_name_themselves():
    with pytest.raises(TypeError, match="specs"):
        CacheManager([("id", ((), torch.int64))], cache_size=4)
    with pytest.raises(TypeError, match=r"specs\['id'\] dtype"):
        CacheManager({"id": ((), "int64")}, cache_size=4)
    with pytest.raises(ValueError, match="cache_size"):
        CacheManager(specs(), cache_size=0)
    with pytest.raises(TypeError, match="cache_size"):
        CacheManager(specs(), cache_size=4.0)
    with pytest.raises(ValueError, match="top_k"):
        CacheClassificationLoss("embedding", ("id",), top_k=0)
    with pytest.raises(ValueError, match="reduction"):
        CacheClassificationLoss("embedding", ("id",), reduction="avg")
    with pytest.raises(TypeError, match="data_keys"):
        CacheClassificationLoss("embedding", "id")
    with pytest.raises(TypeError, match="generator"):
        CacheClassificationLoss("embedding", ("id",), generator=0)
    table = torch.randn(5, D)
    cache = cache_with(table, [0, 1], size=4)
    loss = CacheClassificationLoss("embedding", ("id",))
    with pytest.raises(ValueError, match=r"query_embeddings has shape \(2, 3\), expected \[B, 4\]"):
        loss(lookup(table), torch.zeros(2, 3), torch.zeros(2, 3), cache)
    with pytest.raises(ValueError, match="pos_doc_embeddings has 3 rows"):
        loss(lookup(table), torch.zeros(2, D), torch.zeros(3, D), cache)
    with pytest.raises(ValueError, match="doc_network returned"):
        loss(lambda d: torch.zeros(2, D + 1), torch.zeros(2, D), torch.zeros(2, D), cache)
    h = CacheLossHandler(CacheManager(specs(), cache_size=4), loss)
    with pytest.raises(ValueError, match="pos_doc_data must have the fields \\['id'\\]"):
        h(lookup(table), torch.zeros(2, D), torch.zeros(2, D), {"tokens": torch.zeros(2)})


# ---------------------------------------------------------------------------------------
# Values that do not fit the spec's dtype


INT_SPECS = [torch.bool, torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64]


def int_range(dtype):
    if dtype == torch.bool:
        return 0, 1
    info = torch.iinfo(dtype)
    return int(info.min), int(info.max)


def test_issue_examples_int32_and_float16_overflow_are_refused():
    m = CacheManager({"id": ((), torch.int32), "embedding": ((2,), torch.float16)}, cache_size=4)
    c = m.init_cache()
    ok = {"id": torch.tensor([1, 2]), "embedding": torch.ones(2, 2)}
    with pytest.raises(ValueError, match=r"new_items\['id'\] row 1 holds 1099511627783, outside the range"):
        m.update_cache(c, new_items={**ok, "id": torch.tensor([3, 2**40 + 7])})
    with pytest.raises(ValueError, match=r"new_items\['embedding'\] row 0 holds 1000000.0, which overflows"):
        m.update_cache(c, new_items={**ok, "embedding": torch.tensor([[1e6, 0.0], [1.0, 1.0]])})
    c = m.update_cache(c, new_items=ok)
    before = c.clone()
    with pytest.raises(ValueError, match=r"updated_item_data\['embedding'\] row 1 holds -70000.0"):
        m.update_cache(
            c,
            updated_item_indices=torch.tensor([0, 1]),
            updated_item_data={"embedding": torch.tensor([[1.0, 2.0], [3.0, -7e4]])},
        )
    with pytest.raises(ValueError, match=r"updated_item_data\['id'\] row 0 holds -2147483649"):
        m.update_cache(
            c, updated_item_indices=torch.tensor([1]), updated_item_data={"id": torch.tensor([-(2**31) - 1])}
        )
    for k in c.data:  # nothing half-applied
        assert torch.equal(c.data[k], before.data[k])
    assert torch.equal(c.age, before.age) and torch.equal(c.filled, before.filled)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(INT_SPECS),
    st.sampled_from([torch.int64, torch.int32, torch.uint8, torch.bool]),
    st.lists(st.integers(-(2**63), 2**63 - 1), min_size=1, max_size=6),
)
def test_integers_are_stored_exactly_or_refused(spec_dtype, input_dtype, values):
    lo_in, hi_in = int_range(input_dtype)
    values = [min(max(v, lo_in), hi_in) for v in values]  # representable in the input dtype
    x = torch.tensor(values, dtype=input_dtype)
    m = CacheManager({"v": ((), spec_dtype)}, cache_size=8)
    lo, hi = int_range(spec_dtype)
    first_bad = next((i for i, v in enumerate(values) if not lo <= v <= hi), None)
    if first_bad is None:
        c = m.update_cache(m.init_cache(), new_items={"v": x})
        assert [int(v) for v in c.data["v"][: len(values)].tolist()] == values
    else:
        with pytest.raises(ValueError, match=rf"new_items\['v'\] row {first_bad} holds"):
            m.update_cache(m.init_cache(), new_items={"v": x})


def test_unsigned_inputs_beyond_int64_are_refused():
    m = CacheManager({"v": ((), torch.int64)}, cache_size=4)
    x = torch.tensor([5, 2**63 + 5], dtype=torch.uint64)
    with pytest.raises(ValueError, match=r"new_items\['v'\] row 1 holds"):
        m.update_cache(m.init_cache(), new_items={"v": x})
    c = m.update_cache(m.init_cache(), new_items={"v": torch.tensor([7, 2**32 - 1], dtype=torch.uint32)})
    assert c.data["v"][:2].tolist() == [7, 2**32 - 1]


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from([(torch.float16, np.float16), (torch.float32, np.float32), (torch.float64, np.float64)]),
    st.lists(st.floats(allow_nan=True, allow_infinity=True, width=64), min_size=1, max_size=5),
)
def test_floats_are_stored_when_finite_after_the_cast(dtypes, values):
    spec_dtype, np_dtype = dtypes
    x = torch.tensor(values, dtype=torch.float64)[:, None]
    m = CacheManager({"e": ((1,), spec_dtype)}, cache_size=8)
    with np.errstate(over="ignore"):
        fits = [bool(np.isfinite(np_dtype(v))) for v in values]  # numpy rounds to nearest, like torch
    if all(fits):
        c = m.update_cache(m.init_cache(), new_items={"e": x})
        want = np.array(values, dtype=np_dtype)
        assert np.array_equal(c.data["e"][: len(values), 0].numpy(), want)
    else:
        i = fits.index(False)
        why = "overflows" if math.isfinite(values[i]) else "finite values only"
        with pytest.raises(ValueError, match=rf"new_items\['e'\] row {i} holds .*{why}"):
            m.update_cache(m.init_cache(), new_items={"e": x})


def test_bfloat16_overflow_nan_and_rounding():
    m = CacheManager({"e": ((2,), torch.bfloat16)}, cache_size=4)
    with pytest.raises(ValueError, match="overflows torch.bfloat16"):
        m.update_cache(m.init_cache(), new_items={"e": torch.tensor([[1e39, 0.0]], dtype=torch.float64)})
    with pytest.raises(ValueError, match="nan, and the cache stores finite values only"):
        m.update_cache(m.init_cache(), new_items={"e": torch.tensor([[0.0, float("nan")]])})
    c = m.update_cache(m.init_cache(), new_items={"e": torch.tensor([[1e-40, 1.001]])})  # rounding is fine
    assert c.data["e"][0].tolist() == [torch.tensor(1e-40).bfloat16().item(), 1.0]


def test_rows_that_are_not_stored_are_not_checked():
    m = CacheManager({"id": ((), torch.int8), "embedding": ((D,), torch.float16)}, cache_size=4)
    bad = torch.full((1, D), float("nan"))
    c = m.update_cache(
        m.init_cache(),
        new_items={"id": torch.tensor([1, 1000]), "embedding": torch.cat([torch.ones(1, D), bad])},
        new_items_mask=torch.tensor([True, False]),
    )
    assert c.data["id"].tolist() == [1, 0, 0, 0] and c.filled.sum() == 1
    with pytest.raises(ValueError, match=r"new_items\['id'\] row 3 holds 1000"):  # the caller's row
        m.update_cache(
            c,
            new_items={"id": torch.tensor([1, 2, 3, 1000]), "embedding": torch.ones(4, D)},
            new_items_mask=torch.tensor([False, True, False, True]),
        )
    # refreshing an empty slot (3) is dropped, so its value is not checked; slot 0's is
    c2 = m.update_cache(c, updated_item_indices=torch.tensor([3]), updated_item_data={"embedding": bad})
    assert torch.equal(c2.data["embedding"], c.data["embedding"])
    with pytest.raises(ValueError, match=r"updated_item_data\['embedding'\] row 1 holds nan"):
        m.update_cache(
            c,
            updated_item_indices=torch.tensor([3, 0]),
            updated_item_data={"embedding": torch.cat([bad, bad])},
        )


def test_unsupported_spec_dtypes_are_refused():
    for dtype in (torch.uint64, torch.complex64):
        with pytest.raises(TypeError, match=r"specs\['x'\] dtype .* is not supported"):
            CacheManager({"x": ((), dtype)}, cache_size=2)


def test_handler_checks_the_positives_before_the_loss_runs():
    g = torch.Generator().manual_seed(2)
    table = torch.randn(20, D, generator=g)
    m = CacheManager({"id": ((), torch.int16), "embedding": ((D,), torch.float16)}, cache_size=4)
    h = CacheLossHandler(m, CacheClassificationLoss("embedding", ("id",)))
    h(lookup(table), table[:3], table[:3], {"id": torch.arange(3)})  # now the loss would sample
    before = h.cache.clone()
    calls = []

    def net(d):
        calls.append(1)
        return table[d["id"].long()]

    q5 = torch.randn(5, D, generator=g)
    with pytest.raises(ValueError, match="pos_doc_embeddings has 5 rows, more than cache_size=4"):
        h(net, q5, q5, {"id": torch.arange(5)})
    huge = table[:2].clone()
    huge[1, 2] = 1e5
    with pytest.raises(ValueError, match=r"pos_doc_embeddings row 1 holds 100000.0, which overflows"):
        h(net, table[:2], huge, {"id": torch.arange(2)})
    with pytest.raises(ValueError, match=r"pos_doc_data\['id'\] row 0 holds 40000"):
        h(net, table[:2], table[:2], {"id": torch.tensor([40000, 1])})
    with pytest.raises(ValueError, match=r"pos_doc_data\['id'\] has 3 rows, expected 2"):
        h(net, table[:2], table[:2], {"id": torch.arange(3)})
    assert not calls  # the loss never ran
    for k in before.data:
        assert torch.equal(h.cache.data[k], before.data[k])
    assert torch.equal(h.cache.age, before.age) and torch.equal(h.cache.filled, before.filled)
    h(net, table[:4], table[:4], {"id": torch.arange(4)})  # a batch of cache_size is fine
    assert calls


# ---------------------------------------------------------------------------------------
# Specs: shapes of Python ints, a torch.dtype, a positive cache_size (issue 17, item 11)


@pytest.mark.parametrize(
    "shape, exc",
    [
        ((2.5,), TypeError),  # int(2.5) would silently make it (2,)
        ((True,), TypeError),  # a bool is not a size
        ((2, False), TypeError),
        (("3",), TypeError),
        ("16", TypeError),  # a str is not a tuple of sizes ("16" would be (1, 6))
        ((torch.tensor(3),), TypeError),
        ((np.int64(3),), TypeError),
        ((3.0,), TypeError),
        ({3}, TypeError),
        (None, TypeError),
        (2.5, TypeError),
        ((-1,), ValueError),
        ((2, -3), ValueError),
    ],
)
def test_spec_shapes_must_be_tuples_of_non_negative_python_ints(shape, exc):
    with pytest.raises(exc, match=r"specs\['a'\] shape"):
        CacheManager({"a": (shape, torch.float32)}, cache_size=4)


@pytest.mark.parametrize(
    "shape, want", [((3,), (3,)), ([2, 3], (2, 3)), (4, (4,)), ((), ()), (torch.Size([2, 0]), (2, 0))]
)
def test_spec_shapes_accepted(shape, want):
    m = CacheManager({"a": (shape, torch.float32)}, cache_size=4)
    assert m.specs["a"] == (want, torch.float32)
    assert all(type(s) is int for s in m.specs["a"][0])
    assert m.init_cache().data["a"].shape == (4, *want)


@pytest.mark.parametrize("dtype", ["float32", np.float32, float, None, torch.Tensor])
def test_spec_dtype_must_be_a_torch_dtype(dtype):
    with pytest.raises(TypeError, match=r"specs\['a'\] dtype must be a torch.dtype"):
        CacheManager({"a": ((2,), dtype)}, cache_size=4)


@pytest.mark.parametrize(
    "size, exc",
    [
        (0, ValueError),
        (-2, ValueError),
        (4.0, TypeError),
        (True, TypeError),
        ("4", TypeError),
        (None, TypeError),
    ],
)
def test_cache_size_must_be_a_positive_int(size, exc):
    with pytest.raises(exc, match="cache_size"):
        CacheManager({"a": ((2,), torch.float32)}, cache_size=size)


# ---------------------------------------------------------------------------------------
# Sparse and quantized tensors are refused up front, naming the argument


def odd_layouts(x):
    out = {"sparse_coo": x.to_sparse()}
    if x.dim() == 2:
        out["sparse_csr"] = x.to_sparse_csr()
    if x.is_floating_point():
        out["quantized"] = torch.quantize_per_tensor(x.float(), 0.1, 0, torch.quint8)
    return out


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_sparse_and_quantized_tensors_are_refused_up_front():
    g = torch.Generator().manual_seed(3)
    table = torch.randn(6, D, generator=g)
    m = CacheManager(specs(), cache_size=4)
    loss = CacheClassificationLoss("embedding", ("id",))
    cache = m.update_cache(m.init_cache(), new_items=items([0, 1, 2], table))
    q, pos = table[:2].clone(), table[2:4].clone()
    for layout, bad in odd_layouts(q).items():
        with pytest.raises(TypeError, match=f"query_embeddings must be a dense tensor, got a {layout}"):
            loss(lookup(table), bad, pos, cache)
        with pytest.raises(TypeError, match=f"pos_doc_embeddings must be a dense tensor, got a {layout}"):
            loss(lookup(table), q, bad, cache)
        with pytest.raises(
            TypeError, match=rf"new_items\['embedding'\] must be a dense tensor, got a {layout}"
        ):
            m.update_cache(cache, new_items={"id": torch.tensor([4, 5]), "embedding": bad})
        with pytest.raises(
            TypeError, match=rf"updated_item_data\['embedding'\] must be a dense tensor, got a {layout}"
        ):
            m.update_cache(
                cache, updated_item_indices=torch.tensor([0, 1]), updated_item_data={"embedding": bad}
            )
    ids = torch.tensor([0, 1])
    for layout, bad in odd_layouts(ids).items():
        with pytest.raises(TypeError, match=f"updated_item_indices must be a dense tensor, got a {layout}"):
            m.update_cache(cache, updated_item_indices=bad, updated_item_data={"embedding": q})
        with pytest.raises(TypeError, match=rf"new_items\['id'\] must be a dense tensor, got a {layout}"):
            m.update_cache(cache, new_items={"id": bad, "embedding": q})
    mask = torch.tensor([True, False])
    with pytest.raises(TypeError, match="new_items_mask must be a dense tensor, got a sparse_coo"):
        m.update_cache(cache, new_items={"id": ids, "embedding": q}, new_items_mask=mask.to_sparse())
    h = CacheLossHandler(m, loss)
    h(lookup(table), q, pos, {"id": torch.tensor([2, 3])})
    before = h.cache.clone()
    for layout, bad in odd_layouts(q).items():
        with pytest.raises(TypeError, match=f"pos_doc_embeddings must be a dense tensor, got a {layout}"):
            h(lookup(table), q, bad, {"id": torch.tensor([2, 3])})
        with pytest.raises(TypeError, match=f"query_embeddings must be a dense tensor, got a {layout}"):
            h(lookup(table), bad, pos, {"id": torch.tensor([2, 3])})
    for k in before.data:  # nothing was written
        assert torch.equal(h.cache.data[k], before.data[k])
    assert torch.equal(h.cache.age, before.age) and torch.equal(h.cache.filled, before.filled)


# ---------------------------------------------------------------------------------------
# positive_logits: the positive class's logit given directly


@pytest.mark.parametrize("top_k", [None, 3])
@pytest.mark.parametrize("reduction", ["none", "mean"])
def test_positive_logits_equal_to_the_default_give_the_default_call(top_k, reduction):
    """positive_logits = t(<q, d_pos>) reproduces the default call exactly: values, gradients
    (through q, d_pos and doc_network) and the sampled slots (same generator state)."""
    g = torch.Generator().manual_seed(31)
    table = torch.randn(12, D, generator=g)
    cache = cache_with(table + 0.2 * torch.randn(12, D, generator=g), list(range(10)), size=12)
    scale = 2.5

    def run(use_logits):
        q = torch.randn(7, D, generator=torch.Generator().manual_seed(1)).requires_grad_(True)
        pos = torch.randn(7, D, generator=torch.Generator().manual_seed(2)).requires_grad_(True)
        w = torch.nn.Parameter(table.clone())
        loss = CacheClassificationLoss(
            "embedding",
            ("id",),
            score_transform=lambda s: scale * s,
            top_k=top_k,
            reduction=reduction,
            generator=torch.Generator().manual_seed(5),
        )
        kw = {"positive_logits": scale * (q * pos).sum(1)} if use_logits else {}
        out = loss(lambda d: w[d["id"]], q, pos, cache, **kw)
        return out, torch.autograd.grad(out.training_loss.sum(), (q, pos, w))

    (a, ga), (b, gb) = run(False), run(True)
    assert torch.equal(a.updated_item_indices, b.updated_item_indices)
    for x, y in zip(a[:3], b[:3]):
        assert torch.equal(x, y)
    assert torch.equal(a.updated_item_data["embedding"], b.updated_item_data["embedding"])
    for x, y in zip(ga, gb):
        assert torch.equal(x, y)
    assert ga[1].abs().sum() > 0


def test_positive_logits_is_the_positive_class_logit():
    """Any logit can be the positive class's (here a log-sum-exp over two positives): p, the
    losses and the gradient through positive_logits follow the formulas; pos_doc_embeddings may
    be None; score_transform is not applied to it."""
    g = torch.Generator().manual_seed(32)
    table = torch.randn(8, D, generator=g, dtype=torch.float64)
    m = CacheManager({"id": ((), torch.int64), "embedding": ((D,), torch.float64)}, cache_size=8)
    cache = m.update_cache(m.init_cache(), new_items={"id": torch.arange(6), "embedding": table[:6]})
    q = torch.randn(4, D, generator=g, dtype=torch.float64, requires_grad=True)
    two = torch.randn(4, 2, D, generator=g, dtype=torch.float64)
    s_pos = torch.logsumexp(3.0 * (q[:, None] * two).sum(2), dim=1)
    loss = CacheClassificationLoss(
        "embedding",
        ("id",),
        score_transform=lambda s: 3.0 * s,
        reduction="none",
        generator=torch.Generator().manual_seed(0),
    )
    out = loss(lookup(table), q, None, cache, positive_logits=s_pos)
    s_cache = 3.0 * q @ table[:6].T
    p = torch.softmax(torch.cat([s_pos[:, None], s_cache], 1), 1)[:, 0].detach()
    s_neg = 3.0 * (q * table[cache.data["id"][out.updated_item_indices]]).sum(1)
    torch.testing.assert_close(out.interpretable_loss, -torch.log(p))
    torch.testing.assert_close(out.training_loss, (1 - p) * (s_neg - s_pos))
    got = torch.autograd.grad(out.training_loss.sum(), q, retain_graph=True)[0]
    want = torch.autograd.grad(((1 - p) * (s_neg - s_pos)).sum(), q)[0]
    torch.testing.assert_close(got, want)


def test_handler_passes_positive_logits_through():
    g = torch.Generator().manual_seed(33)
    table = torch.randn(30, D, generator=g)
    caches, outs = [], []
    for use_logits in (False, True):
        h = CacheLossHandler(
            CacheManager(specs(), cache_size=8),
            CacheClassificationLoss("embedding", ("id",), generator=torch.Generator().manual_seed(3)),
        )
        for step in range(3):
            ids = torch.arange(4 * step, 4 * step + 4)
            q = table[ids + 10]
            kw = {"positive_logits": (q * table[ids]).sum(1)} if use_logits else {}
            out = h(lookup(table), q, table[ids], {"id": ids}, **kw)
        caches.append(h.cache)
        outs.append(out)
    assert torch.equal(outs[0].updated_item_indices, outs[1].updated_item_indices)
    assert torch.equal(outs[0].training_loss, outs[1].training_loss)
    for k in caches[0].data:
        assert torch.equal(caches[0].data[k], caches[1].data[k])
    assert torch.equal(caches[0].age, caches[1].age)


def test_bad_positive_logits_are_refused():
    table = torch.randn(5, D)
    cache = cache_with(table, [0, 1], size=4)
    loss = CacheClassificationLoss("embedding", ("id",))
    q = torch.zeros(2, D)
    with pytest.raises(ValueError, match=r"positive_logits has shape \(2, 1\), expected \[B\] = \(2,\)"):
        loss(lookup(table), q, None, cache, positive_logits=torch.zeros(2, 1))
    with pytest.raises(TypeError, match="positive_logits must be floating-point"):
        loss(lookup(table), q, None, cache, positive_logits=torch.zeros(2, dtype=torch.int64))
    with pytest.raises(TypeError, match="positive_logits must be a torch.Tensor"):
        loss(lookup(table), q, None, cache, positive_logits=[0.0, 0.0])
    with pytest.raises(TypeError, match="pos_doc_embeddings must be a tensor"):
        loss(lookup(table), q, None, cache)
    with pytest.raises(ValueError, match="positive_logits is on meta"):
        loss(lookup(table), q, None, cache, positive_logits=torch.zeros(2, device="meta"))


# ---------------------------------------------------------------------------------------
# exclude_keys: a query's own positive is never its negative


def xspecs(d=D):
    return {"id": ((), torch.int64), "tokens": ((3,), torch.int32), "embedding": ((d,), torch.float32)}


def xcache(table, ids, size, tokens=None):
    """Slots holding documents `ids` (embedding table[id]); tokens default [id, id+1, id+2]."""
    ids = torch.as_tensor(ids)
    tok = torch.stack([ids, ids + 1, ids + 2], 1) if tokens is None else tokens
    m = CacheManager(xspecs(table.shape[1]), cache_size=size)
    return m.update_cache(m.init_cache(), new_items={"id": ids, "tokens": tok, "embedding": table[ids]})


def test_exclude_keys_never_draws_a_copy_of_the_querys_positive():
    """The cache holds copies of each query's positive, and they are its best-scoring slots (the
    query is its positive), so without exclusion they are drawn most of the time; with
    exclude_keys they never are, over many seeds, with and without top_k."""
    g = torch.Generator().manual_seed(41)
    table = torch.randn(10, D, generator=g)
    ids = [0, 1, 2, 3, 4, 0, 1, 2, 5, 0]  # positive 0 three times, 1 and 2 twice
    cache = xcache(table, ids, size=12)
    pos_ids = torch.tensor([0, 1, 2, 7])  # 7 is not cached: nothing to exclude
    q = 3.0 * table[pos_ids]
    slot_ids = torch.tensor(ids)
    for top_k in (None, 2):
        copies_drawn = 0
        for seed in range(200):
            for excl in (None, ("id",)):
                loss = CacheClassificationLoss(
                    "embedding",
                    ("id",),
                    top_k=top_k,
                    reduction="none",
                    generator=torch.Generator().manual_seed(seed),
                    exclude_keys=excl,
                )
                out = loss(lookup(table), q, table[pos_ids], cache, pos_doc_data={"id": pos_ids})
                drawn = slot_ids[out.updated_item_indices]
                if excl is None:
                    copies_drawn += int((drawn == pos_ids).sum())
                else:
                    assert not bool((drawn == pos_ids).any()), (seed, top_k, drawn)
                    assert bool(cache.filled[out.updated_item_indices].all())
        assert copies_drawn > 200 * 3 * 0.5  # without exclusion, the copies are drawn


@pytest.mark.parametrize("top_k", [None, 4])
def test_excluded_softmax_equals_a_brute_force_reference(top_k):
    """Per query: the draws follow softmax over the filled slots whose tokens differ from its
    positive's (the top_k best of those), and p, the losses and the gradient are the masked
    cross-entropy's, computed here by brute force."""
    g = torch.Generator().manual_seed(42)
    table = 0.8 * torch.randn(12, D, generator=g, dtype=torch.float64)
    ids = [0, 1, 2, 3, 4, 5, 6, 0, 1, 7]  # slots 10, 11 stay empty
    m = CacheManager(
        {"id": ((), torch.int64), "tokens": ((3,), torch.int32), "embedding": ((D,), torch.float64)},
        cache_size=12,
    )
    tid = torch.tensor(ids)
    tokens = torch.stack([tid, tid + 1, tid + 2], 1)
    cache = m.update_cache(m.init_cache(), new_items={"id": tid, "tokens": tokens, "embedding": table[tid]})
    pos_ids = torch.tensor([0, 1, 9])
    pos_tokens = torch.stack([pos_ids, pos_ids + 1, pos_ids + 2], 1)
    q0 = torch.randn(3, D, generator=g, dtype=torch.float64)
    n = 20000
    q = q0.repeat(n, 1).requires_grad_(True)
    pos = table[pos_ids].repeat(n, 1)
    loss = CacheClassificationLoss(
        "embedding",
        ("id",),
        score_transform=lambda s: 1.5 * s,
        top_k=top_k,
        reduction="none",
        generator=torch.Generator().manual_seed(8),
        exclude_keys=("tokens",),
    )
    out = loss(lookup(table), q, pos, cache, pos_doc_data={"tokens": pos_tokens.repeat(n, 1)})

    # brute force, one query at a time
    s = 1.5 * q0 @ table[tid].T  # [3, 10] over the filled slots 0..9
    want_p, probs = [], []
    for i in range(3):
        allowed = [j for j in range(10) if not torch.equal(tokens[j], pos_tokens[i])]
        if top_k is not None:
            allowed = sorted(allowed, key=lambda j: -float(s[i, j]))[:top_k]
        row = torch.full((12,), float("-inf"), dtype=torch.float64)
        row[allowed] = s[i, allowed]
        probs.append(torch.softmax(row, 0))
        s_pos = 1.5 * (q0[i] * table[pos_ids[i]]).sum()
        want_p.append(torch.softmax(torch.cat([s_pos[None], s[i, allowed]]), 0)[0])
    want_p = torch.stack(want_p)
    torch.testing.assert_close(out.interpretable_loss[:3], -torch.log(want_p))
    slots = out.updated_item_indices.view(n, 3)
    for i in range(3):
        counts = torch.bincount(slots[:, i], minlength=12)
        support = probs[i] > 0
        assert counts[~support].sum() == 0
        chi_square_check(counts[support], probs[i][support])
    s_neg = 1.5 * (q * table[tid[out.updated_item_indices]]).sum(1)
    s_pos = 1.5 * (q * pos).sum(1)
    p = want_p.repeat(n)
    torch.testing.assert_close(out.training_loss, ((1 - p) * (s_neg - s_pos)).detach())
    got = torch.autograd.grad(out.training_loss.sum(), q)[0]
    want = torch.autograd.grad(((1 - p) * (s_neg - s_pos)).sum(), q)[0]
    torch.testing.assert_close(got, want)


def test_a_query_whose_every_slot_is_excluded_has_no_loss():
    g = torch.Generator().manual_seed(43)
    table = torch.randn(6, D, generator=g)
    cache = xcache(table, [3, 3, 3], size=5)  # three copies of document 3, two empty slots
    loss = CacheClassificationLoss(
        "embedding",
        ("id",),
        reduction="none",
        generator=torch.Generator().manual_seed(0),
        exclude_keys=("id",),
    )
    for top_k in (None, 2):
        loss.top_k = top_k
        q = torch.randn(2, D, generator=g, requires_grad=True)
        pos_ids = torch.tensor([3, 4])
        pos = table[pos_ids].clone().requires_grad_(True)
        out = loss(lookup(table), q, pos, cache, pos_doc_data={"id": pos_ids})
        assert float(out.training_loss[0].detach()) == 0.0 and float(out.interpretable_loss[0]) == 0.0
        assert float(out.interpretable_loss[1]) > 0  # document 3 is a negative of query 1
        gq, gp = torch.autograd.grad(out.training_loss[0], (q, pos))
        assert not gq.any() and not gp.any()
        # row 0 re-embeds one of its excluded (filled) copies: a correct refresh
        assert int(out.updated_item_indices[0]) in (0, 1, 2)
        torch.testing.assert_close(out.updated_item_data["embedding"][0], table[3])


def test_matching_slots_is_exact_against_a_brute_force_reference():
    """Random rows with many duplicates, and values that collide in the hash (x and x + P,
    P = 2**31 - 1, in int64): the mask is exactly 'equal on every field'."""
    from rankgrad.negative_cache._cache import _HASH_P, matching_slots

    g = torch.Generator().manual_seed(44)
    for trial in range(20):
        c, n = 50, 9
        cache = {
            "a": torch.randint(0, 3, (c, 2, 3), generator=g),
            "b": torch.randint(0, 2, (c,), generator=g).bool(),
        }
        rows = {
            "a": cache["a"][torch.randint(0, c, (n,), generator=g)].clone(),
            "b": torch.ones(n, dtype=torch.bool),
        }
        rows["a"][::3, 0, 0] += _HASH_P  # same hash as the cached row it copied, other value
        filled = torch.rand(c, generator=g) < 0.8
        got = matching_slots(rows, cache, filled)
        want = torch.zeros(n, c, dtype=torch.bool)
        for i in range(n):
            for j in range(c):
                want[i, j] = bool(filled[j]) and all(torch.equal(rows[k][i], cache[k][j]) for k in cache)
        assert torch.equal(got, want), trial
    # wide rows (token ids of length 300, several hash blocks), a shifted copy does not match
    tok = torch.randint(0, 30000, (40, 300), generator=g, dtype=torch.int32)
    rows = torch.cat([tok[[5, 7]], tok[[9]].roll(1, dims=1)])
    got = matching_slots({"t": rows}, {"t": tok}, torch.ones(40, dtype=torch.bool))
    assert got.sum(1).tolist() == [1, 1, 0] and bool(got[0, 5]) and bool(got[1, 7])


def test_handler_excludes_the_copies_of_its_positives():
    """A handler with exclude_keys: the positives of step 1 come back at step 2 and are never
    drawn as their own negatives; they are enqueued again after the loss."""
    g = torch.Generator().manual_seed(45)
    table = torch.randn(20, D, generator=g)
    m = CacheManager(xspecs(), cache_size=8)
    loss = CacheClassificationLoss(
        "embedding",
        ("id", "tokens"),
        reduction="none",
        generator=torch.Generator().manual_seed(1),
        exclude_keys=("id",),
    )
    h = CacheLossHandler(m, loss)

    def data(ids):
        return {"id": ids, "tokens": torch.stack([ids, ids + 1, ids + 2], 1)}

    net = lambda d: table[d["id"]]  # noqa: E731
    ids = torch.tensor([0, 1, 2, 3])
    h(net, 4 * table[ids], table[ids], data(ids))
    for _ in range(30):
        before = h.cache.clone()
        out = h(net, 4 * table[ids], table[ids], data(ids))  # the best cached slot is the copy
        drawn = before.data["id"][out.updated_item_indices]
        assert not bool((drawn == ids).any())
        assert float(out.interpretable_loss.min()) > 0


def test_bad_exclude_keys_are_refused():
    with pytest.raises(TypeError, match="exclude_keys must be None or a sequence of str"):
        CacheClassificationLoss("embedding", ("id",), exclude_keys="id")
    with pytest.raises(ValueError, match="exclude_keys must name at least one field"):
        CacheClassificationLoss("embedding", ("id",), exclude_keys=())
    with pytest.raises(ValueError, match="must not contain the embedding_key"):
        CacheClassificationLoss("embedding", ("id",), exclude_keys=("embedding",))
    loss = CacheClassificationLoss("embedding", ("id",), exclude_keys=("tokens",))
    with pytest.raises(ValueError, match=r"specs has no field for the exclude_keys \['tokens'\]"):
        CacheLossHandler(CacheManager(specs(), cache_size=4), loss)
    fspecs = {**specs(), "tokens": ((3,), torch.float32)}
    with pytest.raises(TypeError, match=r"exclude_keys \['tokens'\] are float fields"):
        CacheLossHandler(CacheManager(fspecs, cache_size=4), loss)
    table = torch.randn(6, D)
    cache = xcache(table, [0, 1], size=4)
    q = torch.zeros(2, D)
    with pytest.raises(TypeError, match="pos_doc_data must be a dict"):
        loss(lookup(table), q, q, cache)
    with pytest.raises(ValueError, match=r"pos_doc_data has no field 'tokens'"):
        loss(lookup(table), q, q, cache, pos_doc_data={"id": torch.tensor([0, 1])})
    with pytest.raises(ValueError, match=r"pos_doc_data\['tokens'\] has shape \(2, 2\), expected \(2, 3\)"):
        loss(lookup(table), q, q, cache, pos_doc_data={"tokens": torch.zeros(2, 2, dtype=torch.int64)})
    with pytest.raises(TypeError, match=r"pos_doc_data\['tokens'\] must be integer or bool"):
        loss(lookup(table), q, q, cache, pos_doc_data={"tokens": torch.zeros(2, 3)})
    fcache = NegativeCache({**cache.data, "tokens": cache.data["tokens"].float()}, cache.age, cache.filled)
    with pytest.raises(TypeError, match="cache field 'tokens' .exclude_keys. is torch.float32"):
        loss(lookup(table), q, q, fcache, pos_doc_data={"tokens": torch.zeros(2, 3, dtype=torch.int64)})
