"""Checkpoints of the negative cache (SPEC section 10): state_dict / load_state_dict round-trip
exactly, load under torch.load(weights_only=True), and a resumed run continues bit for bit."""

import copy

import pytest
import torch

from rankgrad.negative_cache import CacheClassificationLoss, CacheLossHandler, CacheManager

D, C, B = 6, 16, 5
SPECS = {"id": ((), torch.int64), "tokens": ((3,), torch.int32), "embedding": ((D,), torch.float32)}


def batches(n, seed):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(B, D, generator=g), torch.randint(0, 40, (B,), generator=g)) for _ in range(n)]


class Run:
    """A dual encoder (one table per side) trained with the handler and SGD."""

    def __init__(self, use_lru, top_k):
        torch.manual_seed(0)
        self.docs = torch.nn.Parameter(0.5 * torch.randn(40, D))
        self.query = torch.nn.Linear(D, D)
        self.opt = torch.optim.SGD([self.docs, *self.query.parameters()], lr=0.5, momentum=0.9)
        loss = CacheClassificationLoss(
            "embedding",
            ("id", "tokens"),
            score_transform=lambda s: 4.0 * s,
            top_k=top_k,
            generator=torch.Generator().manual_seed(11),
        )
        self.handler = CacheLossHandler(CacheManager(SPECS, cache_size=C, use_lru=use_lru), loss)

    def doc_network(self, data):
        return self.docs[data["id"]]

    def step(self, x, ids):
        q = self.query(x)
        tokens = torch.stack([ids, ids + 1, ids + 2], 1).to(torch.int32)
        out = self.handler(self.doc_network, q, self.docs[ids], {"id": ids, "tokens": tokens})
        self.opt.zero_grad()
        out.training_loss.backward()
        self.opt.step()
        return out

    def state_dict(self):
        return {
            "handler": self.handler.state_dict(),
            "docs": self.docs.detach(),
            "query": self.query.state_dict(),
            "opt": self.opt.state_dict(),
        }

    def load_state_dict(self, state):
        self.handler.load_state_dict(state["handler"])
        with torch.no_grad():
            self.docs.copy_(state["docs"])
        self.query.load_state_dict(state["query"])
        self.opt.load_state_dict(state["opt"])


def cache_tensors(handler):
    c = handler.cache
    return {**{f"data.{k}": v for k, v in c.data.items()}, "age": c.age, "filled": c.filled}


@pytest.mark.parametrize("use_lru, top_k", [(True, None), (False, 3)])
def test_a_resumed_run_continues_exactly(tmp_path, use_lru, top_k):
    n, m = 7, 6  # 7 * 5 = 35 > 16 slots: evictions and refreshes happen before the checkpoint
    data = batches(n + m, seed=3)
    run = Run(use_lru, top_k)
    for x, ids in data[:n]:
        run.step(x, ids)
    path = tmp_path / "ckpt.pt"
    torch.save(run.state_dict(), path)
    assert bool(run.handler.cache.filled.all())

    later = [run.step(x, ids) for x, ids in data[n:]]

    fresh = Run(use_lru, top_k)
    fresh.handler.cache_loss.generator.manual_seed(999)  # a different state, to be overwritten
    fresh.load_state_dict(torch.load(path, weights_only=True))
    resumed = [fresh.step(x, ids) for x, ids in data[n:]]

    for a, b in zip(later, resumed):
        for name in ("training_loss", "interpretable_loss", "staleness", "updated_item_indices"):
            assert torch.equal(getattr(a, name), getattr(b, name)), name
        assert float(a.staleness) > 0  # the cache was stale, so the refreshes mattered
    want, got = cache_tensors(run.handler), cache_tensors(fresh.handler)
    for k in want:
        assert got[k].dtype == want[k].dtype and torch.equal(got[k], want[k]), k
    assert torch.equal(
        fresh.handler.cache_loss.generator.get_state(), run.handler.cache_loss.generator.get_state()
    )


def test_without_the_checkpoint_the_continuation_differs(tmp_path):
    """The resumed-run test has power: a fresh run with the same weights but an empty cache
    (or another generator state) does not reproduce the losses."""
    data = batches(10, seed=4)
    run = Run(True, None)
    for x, ids in data[:6]:
        run.step(x, ids)
    state = copy.deepcopy(run.state_dict())
    later = [run.step(x, ids) for x, ids in data[6:]]

    no_cache = Run(True, None)
    no_cache.load_state_dict(state)
    no_cache.handler.cache = no_cache.handler.cache_manager.init_cache()
    other_gen = Run(True, None)
    other_gen.load_state_dict(state)
    other_gen.handler.cache_loss.generator.manual_seed(5)
    for variant in (no_cache, other_gen):
        outs = [variant.step(x, ids) for x, ids in data[6:]]
        assert any(
            not torch.equal(a.updated_item_indices, b.updated_item_indices)
            or not torch.equal(a.training_loss, b.training_loss)
            for a, b in zip(later, outs)
        )


def test_manager_round_trip_is_exact_and_holds_only_plain_types(tmp_path):
    g = torch.Generator().manual_seed(1)
    m = CacheManager(SPECS, cache_size=C, use_lru=False)
    cache = m.init_cache()
    for _ in range(3):  # 12 of 16 slots
        ids = torch.randint(0, 10**12, (4,), generator=g)
        cache = m.update_cache(
            cache,
            new_items={
                "id": ids,
                "tokens": torch.randint(-(2**31), 2**31 - 1, (4, 3), generator=g, dtype=torch.int64),
                "embedding": torch.randn(4, D, generator=g) * 1e30,
            },
        )
    state = m.state_dict(cache)
    assert set(state) == {"specs", "cache_size", "data", "age", "filled"}
    assert state["specs"]["tokens"] == {"shape": [3], "dtype": "int32"}
    torch.save(state, tmp_path / "c.pt")
    loaded = m.load_state_dict(torch.load(tmp_path / "c.pt", weights_only=True))
    for k in SPECS:
        assert torch.equal(loaded.data[k], cache.data[k]) and loaded.data[k].dtype == cache.data[k].dtype
    assert torch.equal(loaded.age, cache.age) and torch.equal(loaded.filled, cache.filled)
    assert cache.age.tolist() != [0] * C and not bool(cache.filled.all())  # non-trivial state

    again = m.load_state_dict(state)  # in memory: copies, not views of the saved cache
    again.age.add_(5)
    again.data["embedding"].zero_()
    assert torch.equal(state["age"], cache.age) and cache.data["embedding"].abs().sum() > 0
    # use_lru is policy, not state: another manager with the same layout loads it
    assert torch.equal(CacheManager(SPECS, cache_size=C, use_lru=True).load_state_dict(state).age, cache.age)


def test_bad_states_are_refused_and_change_nothing():
    run = Run(True, None)
    for x, ids in batches(3, seed=8):
        run.step(x, ids)
    good = copy.deepcopy(run.handler.state_dict())
    before = {k: v.clone() for k, v in cache_tensors(run.handler).items()}
    gen_before = run.handler.cache_loss.generator.get_state()

    def bad(path_and_value):
        state = copy.deepcopy(good)
        *path, last = path_and_value[0]
        node = state
        for p in path:
            node = node[p]
        if path_and_value[1] is KeyError:
            del node[last]
        else:
            node[last] = path_and_value[1]
        return state

    cases = [
        ((["cache", "specs", "embedding", "dtype"], "float16"), r"state_dict\['cache'\]\['specs'\]"),
        ((["cache", "cache_size"], 8), r"state_dict\['cache'\]\['cache_size'\] is 8"),
        ((["cache", "age"], torch.zeros(C, dtype=torch.int32)), r"state_dict\['cache'\]\['age'\] must be"),
        ((["cache", "filled"], torch.ones(C + 1, dtype=torch.bool)), r"\['filled'\] must be a torch.bool"),
        (
            (["cache", "data", "embedding"], torch.full((C, D), float("nan"))),
            r"\['data'\]\['embedding'\] row 0",
        ),
        ((["cache", "data", "tokens"], KeyError), r"\['data'\] must hold the fields"),
        ((["cache", "age"], KeyError), r"state_dict\['cache'\] must have the keys"),
        ((["loss", "generator"], KeyError), r"state_dict must have the keys \['generator'\]"),
        (
            (["loss", "generator"], torch.zeros(7, dtype=torch.uint8)),
            r"state_dict\['generator'\] does not fit",
        ),
        ((["loss", "generator"], torch.zeros(5056)), r"state_dict\['generator'\] must be a 1-D uint8"),
        ((["shard"], {"rank": 0, "world_size": 1}), r"state_dict must have the keys \['cache', 'loss'\]"),
    ]
    for change, msg in cases:
        with pytest.raises(ValueError, match=msg):
            run.handler.load_state_dict(bad(change))
        for k, v in cache_tensors(run.handler).items():
            assert torch.equal(v, before[k]), (change, k)
        assert torch.equal(run.handler.cache_loss.generator.get_state(), gen_before)
    with pytest.raises(TypeError, match="state_dict must be a dict"):
        run.handler.load_state_dict([good])

    no_gen = CacheLossHandler(
        CacheManager(SPECS, cache_size=C), CacheClassificationLoss("embedding", ("id", "tokens"))
    )
    assert no_gen.state_dict()["loss"] == {}
    with pytest.raises(ValueError, match="this loss has no generator"):
        no_gen.load_state_dict(good)
    other = CacheManager({**SPECS, "tokens": ((4,), torch.int32)}, cache_size=C)
    with pytest.raises(ValueError, match=r"state_dict\['specs'\]"):
        other.load_state_dict(good["cache"])


def test_state_dict_shares_the_cache_like_a_module_state_dict():
    run = Run(True, None)
    x, ids = batches(1, seed=2)[0]
    state = run.handler.state_dict()
    snapshot = copy.deepcopy(state)
    run.step(x, ids)
    assert torch.equal(state["cache"]["age"], run.handler.cache.age)  # updated in place with the cache
    assert not torch.equal(snapshot["cache"]["age"], run.handler.cache.age)


def test_load_puts_the_cache_on_the_handlers_device(tmp_path):
    run = Run(True, None)
    for x, ids in batches(2, seed=6):
        run.step(x, ids)
    torch.save(run.handler.state_dict(), tmp_path / "h.pt")
    fresh = Run(True, None)
    state = torch.load(tmp_path / "h.pt", weights_only=True, map_location="cpu")
    fresh.handler.load_state_dict(state)
    assert fresh.handler.cache.device == run.handler.cache.device
    assert torch.equal(fresh.handler.cache.data["tokens"], run.handler.cache.data["tokens"])
