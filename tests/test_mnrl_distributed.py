"""MultipleNegativesRankingLoss(gather_across_devices=True) on two gloo ranks (CPU).

The equivalence tested: with per-rank losses L_r (the mean over rank r's anchors, the
candidates being every rank's positives and negatives),

- L_r equals the plain reference for rank r's anchors over the global candidate pool;
- the gradient that rank r finds for its own inputs is d(sum_s L_s)/d(inputs of r):
  every rank's loss reaches the rows it used, wherever they were produced;
- with equal batch sizes, mean_r L_r is the one-process loss on the concatenated batch,
  and the gradient on rank r divided by the world size is the one-process gradient for
  rank r's slice. So DDP, which averages parameter gradients over ranks, trains exactly
  as one process on the global batch; this is checked through a real DDP encoder.
"""

import datetime
import os
import sys
import time

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import rankgrad.nn as rnn

WORLD = 2
TIMEOUT_S = 120

pytestmark = pytest.mark.skipif(
    not (dist.is_available() and dist.is_gloo_available()),
    reason="torch.distributed with the gloo backend is not available",
)


# --------------------------------------------------------------------------- reference


def ref_sim(x, y, kind):
    if kind == "cosine":
        return (x / x.norm(dim=-1, keepdim=True)) @ (y / y.norm(dim=-1, keepdim=True)).T
    if kind == "dot":
        return x @ y.T
    diff = x[:, None, :] - y[None, :, :]
    if kind.startswith("euclidean"):
        sq = diff.pow(2).sum(-1)
        d = torch.where(sq > 0, torch.where(sq > 0, sq, 1.0).sqrt(), 0.0)  # gradient 0 at d = 0
    else:
        d = diff.abs().sum(-1)
    return -d if kind.endswith("_sim") else 1.0 / (1.0 + d)


def ref_ce(logits, target):
    m = logits.max(dim=1, keepdim=True).values.detach()
    lse = m[:, 0] + torch.log(torch.exp(logits - m).sum(dim=1))
    return (lse - logits[torch.arange(len(target)), target]).mean()


def ref_rank_losses(per_rank, kind, scale, symmetric):
    """[L_0, L_1]: each rank's anchors against the candidates of every rank."""
    anchors = [a for a, _, _ in per_rank]
    positives = [p for _, p, _ in per_rank]
    negatives = [n.reshape(-1, n.shape[-1]) for _, _, n in per_rank if n is not None]
    pool = torch.cat(positives + negatives)
    all_a = torch.cat(anchors)
    losses, offset = [], 0
    for a, p, _ in per_rank:
        target = torch.arange(offset, offset + a.shape[0])
        loss = ref_ce(scale * ref_sim(a, pool, kind), target)
        if symmetric:
            loss = (loss + ref_ce(scale * ref_sim(p, all_a, kind), target)) / 2
        losses.append(loss)
        offset += a.shape[0]
    return losses


def leaves(per_rank):
    return [
        tuple(None if x is None else x.detach().clone().requires_grad_(True) for x in t) for t in per_rank
    ]


# ---------------------------------------------------------------------------- the ranks


def _gathered(rank, cases):
    out = {}
    for name, kind, scale, symmetric, per_rank in cases:
        a, p, n = leaves(per_rank)[rank]
        loss = rnn.MultipleNegativesRankingLoss(scale, kind, symmetric, gather_across_devices=True)
        v = loss(a, p, n)
        v.backward()
        out[name] = (v.detach(), a.grad, p.grad, None if n is None else n.grad)
    return out


def _local_only(rank, per_rank):
    a, p, n = per_rank[rank]
    return rnn.MultipleNegativesRankingLoss(5.0, "cosine", True)(a, p, n).detach()


def _ddp_step(rank, feats, weight, k):
    enc = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=False).double()
    with torch.no_grad():
        enc.weight.copy_(weight)
    ddp = torch.nn.parallel.DistributedDataParallel(enc)
    x = feats[rank]
    b = x.shape[0] // (2 + k)
    e = ddp(x)
    a, p, n = e[:b], e[b : 2 * b], e[2 * b :].reshape(b, k, -1)
    loss = rnn.MultipleNegativesRankingLoss(10.0, "cosine", True, gather_across_devices=True)
    v = loss(a, p, n)
    v.backward()
    return v.detach(), enc.weight.grad.clone()


def _empty_on_one_rank(rank, per_rank):
    """Rank 0 has an empty batch; each rank runs loss + backward, for three reductions,
    with and without the symmetric term; then a collective must still work."""
    out = {}
    for symmetric in (False, True):
        for reduction in ("mean", "sum", "none"):
            a, p, n = leaves(per_rank)[rank]
            loss = rnn.MultipleNegativesRankingLoss(
                5.0, "cosine", symmetric, gather_across_devices=True, reduction=reduction
            )
            v = loss(a, p, n)
            v.sum().backward()
            out[(symmetric, reduction)] = (v.detach(), a.grad, p.grad, None if n is None else n.grad)
    t = torch.tensor([float(rank + 1)])
    dist.all_reduce(t)  # the collectives are still in step
    out["all_reduce"] = float(t)
    try:  # every rank empty: every rank raises, after the same collective
        loss = rnn.MultipleNegativesRankingLoss(gather_across_devices=True)
        loss(torch.zeros(0, 5, dtype=torch.float64), torch.zeros(0, 5, dtype=torch.float64))
        out["all_empty"] = None
    except ValueError as err:
        out["all_empty"] = str(err)
    return out


def _mismatched_dimension(rank):
    dim = 4 + rank
    loss = rnn.MultipleNegativesRankingLoss(gather_across_devices=True)
    try:
        loss(torch.randn(2, dim), torch.randn(2, dim))
    except ValueError as err:
        return str(err)
    return None


def _extreme_cases():
    """(name, kind, scale, symmetric, per-rank (a, p, n)) with values that overflowed or
    were rounded away before issue 17 (items 5 and 14), unequal batches."""
    gen = torch.Generator().manual_seed(4321)

    def batch(b, k, power, dtype, equal=False):
        a, p, n = (
            (torch.randn(*s, generator=gen, dtype=torch.float64).clamp(-1.9, 1.9) * 2.0**power).to(dtype)
            for s in ((b, 5), (b, 5), (b, k, 5))
        )
        if equal:
            p = a.clone()
        return a, p, n

    def ranks(power, dtype, equal=False):
        return [batch(3, 1, power, dtype, equal), batch(2, 2, power, dtype, equal)]

    f32, f64 = torch.float32, torch.float64
    return [
        ("dot-products-overflow", "dot", 2.0**-200, True, ranks(100, f32)),
        ("dot-loss-overflows", "dot", 1.0, True, ranks(100, f32)),
        ("cosine-tiny-norms", "cosine", 20.0, True, ranks(-60, f64)),
        ("cosine-f32-norm-overflows", "cosine", 20.0, True, ranks(64, f32)),
        ("euclidean-1e20-equal", "euclidean", 20.0, True, ranks(66, f32, equal=True)),
        ("euclidean_sim-1e20-equal", "euclidean_sim", 3 * 2.0**-66, True, ranks(66, f32, equal=True)),
        ("manhattan_sim-near-max", "manhattan_sim", 2.0**-126, False, ranks(126, f32)),
    ]


def _worker(rank, init_file, out_dir, cases, local_case, ddp_case, empty_case):
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo",
        init_method=f"file://{init_file}",
        rank=rank,
        world_size=WORLD,
        timeout=datetime.timedelta(seconds=60),
    )
    try:
        result = {
            "gathered": _gathered(rank, cases),
            "extreme": _gathered(rank, _extreme_cases()),
            "local": _local_only(rank, local_case),
            "empty": _empty_on_one_rank(rank, empty_case),
            "ddp": _ddp_step(rank, *ddp_case),
            "mismatch": _mismatched_dimension(rank),
        }
        dist.barrier()
        torch.save(result, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


# --------------------------------------------------------------------------------- test


def _batch(gen, b, k, d):
    def r(*s):
        return torch.randn(*s, generator=gen, dtype=torch.float64)

    return (r(b, d), r(b, d), None if k is None else r(b, k, d))


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    gen = torch.Generator().manual_seed(1234)
    d = 5
    cases = []
    for kind in ("cosine", "dot", "euclidean", "manhattan"):
        scale = 1.0 if kind == "dot" else 5.0
        cases.append((f"{kind}-k2-sym", kind, scale, True, [_batch(gen, 3, 2, d) for _ in range(WORLD)]))
    cases.append(("cosine-none", "cosine", 20.0, False, [_batch(gen, 4, None, d) for _ in range(WORLD)]))
    cases.append(("dot-k1", "dot", 0.5, False, [_batch(gen, 3, 1, d) for _ in range(WORLD)]))
    # unequal batches, negatives on one rank only
    cases.append(
        ("euclidean-unequal", "euclidean", 5.0, True, [_batch(gen, 3, None, d), _batch(gen, 4, 2, d)])
    )
    cases.append(("manhattan-unequal", "manhattan", 5.0, False, [_batch(gen, 2, 3, d), _batch(gen, 5, 1, d)]))
    local_case = [_batch(gen, 3, 2, d) for _ in range(WORLD)]
    k, feat = 1, 6
    ddp_case = (
        [torch.randn(3 * (2 + k), feat, generator=gen, dtype=torch.float64) for _ in range(WORLD)],
        torch.randn(d, feat, generator=gen, dtype=torch.float64),
        k,
    )

    empty_case = [_batch(gen, 0, None, d), _batch(gen, 3, 2, d)]

    tmp = tmp_path_factory.mktemp("mnrl_dist")
    env = {}
    if sys.platform.startswith("linux") and "GLOO_SOCKET_IFNAME" not in os.environ:
        env["GLOO_SOCKET_IFNAME"] = "lo"  # no dependence on the host name resolving
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    try:
        ctx = mp.spawn(
            _worker,
            args=(str(tmp / "init"), str(tmp), cases, local_case, ddp_case, empty_case),
            nprocs=WORLD,
            join=False,
        )
        deadline = time.monotonic() + TIMEOUT_S
        while not ctx.join(timeout=1.0):
            if time.monotonic() > deadline:
                for proc in ctx.processes:
                    if proc.is_alive():
                        proc.kill()
                        proc.join(5)
                pytest.fail(f"the two gloo ranks did not finish within {TIMEOUT_S} s")
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    results = [torch.load(tmp / f"rank{r}.pt") for r in range(WORLD)]
    return cases, local_case, ddp_case, results, empty_case


def test_each_rank_loss_and_gradient_match_reference(two_ranks):
    cases, _, _, results, _ = two_ranks
    for name, kind, scale, symmetric, per_rank in cases:
        xs = leaves(per_rank)
        losses = ref_rank_losses(xs, kind, scale, symmetric)
        flat = [x for t in xs for x in t if x is not None]
        total_grads = iter(torch.autograd.grad(sum(losses), flat))
        for r in range(WORLD):
            got_loss, *got_grads = results[r]["gathered"][name]
            torch.testing.assert_close(got_loss, losses[r].detach(), rtol=1e-10, atol=1e-12, msg=name)
            for x, g in zip(xs[r], got_grads):
                if x is None:
                    assert g is None
                    continue
                torch.testing.assert_close(g, next(total_grads), rtol=1e-8, atol=1e-10, msg=name)


def test_extreme_values_on_every_rank_match_reference(two_ranks):
    """Products, norms or distances beyond the dtype (or below it) on the gathered and
    symmetric path: each rank's loss and gradient are the float64 reference's (inf where
    that is beyond float32, never NaN)."""
    *_, results, _ = two_ranks
    for name, kind, scale, symmetric, per_rank in _extreme_cases():
        xs = leaves([tuple(x.double() for x in t) for t in per_rank])
        losses = ref_rank_losses(xs, kind, scale, symmetric)
        flat = [x for t in xs for x in t]
        total_grads = iter(torch.autograd.grad(sum(losses), flat))
        for r in range(WORLD):
            got_loss, *got_grads = results[r]["extreme"][name]
            dtype = per_rank[r][0].dtype
            tol = {"rtol": 1e-10, "atol": 1e-12} if dtype == torch.float64 else {"rtol": 1e-4, "atol": 1e-30}
            assert got_loss.dtype == dtype and not torch.isnan(got_loss), name
            torch.testing.assert_close(got_loss, losses[r].detach().to(dtype), **tol, msg=name)
            for g in got_grads:
                want = next(total_grads)
                if dtype == torch.float32:  # float32 rounding, relative to the largest entry
                    tol["atol"] = 1e-5 * float(want.abs().max())
                torch.testing.assert_close(g, want.to(dtype), **tol, msg=name)
    dot_inf = [results[r]["extreme"]["dot-loss-overflows"][0] for r in range(WORLD)]
    assert any(torch.isinf(v) for v in dot_inf)


def test_equal_batches_equal_one_process_on_the_global_batch(two_ranks):
    cases, _, _, results, _ = two_ranks
    checked = 0
    for name, kind, scale, symmetric, per_rank in cases:
        if len({a.shape[0] for a, _, _ in per_rank}) != 1 or "unequal" in name:
            continue
        xs = leaves([tuple(torch.cat(part) if part[0] is not None else None for part in zip(*per_rank))])[0]
        one = rnn.MultipleNegativesRankingLoss(scale, kind, symmetric)(*xs)
        grads = torch.autograd.grad(one, [x for x in xs if x is not None])
        mean_loss = sum(results[r]["gathered"][name][0] for r in range(WORLD)) / WORLD
        torch.testing.assert_close(mean_loss, one.detach(), rtol=1e-10, atol=1e-12, msg=name)
        b = per_rank[0][0].shape[0]
        for r in range(WORLD):
            for got, full in zip(results[r]["gathered"][name][1:], grads):
                want = full[r * b : (r + 1) * b]
                torch.testing.assert_close(got / WORLD, want, rtol=1e-8, atol=1e-10, msg=name)
        checked += 1
    assert checked == 6


def test_ddp_parameter_gradient_is_the_one_process_gradient(two_ranks):
    _, _, (feats, weight, k), results, _ = two_ranks
    enc = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=False).double()
    with torch.no_grad():
        enc.weight.copy_(weight)
    b = feats[0].shape[0] // (2 + k)
    parts = [enc(x) for x in feats]
    a = torch.cat([e[:b] for e in parts])
    p = torch.cat([e[b : 2 * b] for e in parts])
    n = torch.cat([e[2 * b :].reshape(b, k, -1) for e in parts])
    one = rnn.MultipleNegativesRankingLoss(10.0, "cosine", True)(a, p, n)
    one.backward()
    losses = [results[r]["ddp"][0] for r in range(WORLD)]
    torch.testing.assert_close(sum(losses) / WORLD, one.detach(), rtol=1e-10, atol=1e-12)
    for r in range(WORLD):
        torch.testing.assert_close(results[r]["ddp"][1], enc.weight.grad, rtol=1e-8, atol=1e-10)


def test_without_gather_each_rank_is_local(two_ranks):
    _, local_case, _, results, _ = two_ranks
    for r in range(WORLD):
        a, p, n = local_case[r]
        want = ref_rank_losses([(a, p, n)], "cosine", 5.0, True)[0]
        torch.testing.assert_close(results[r]["local"], want, rtol=1e-10, atol=1e-12)


def test_dimension_mismatch_across_ranks_raises_on_every_rank(two_ranks):
    *_, results, _ = two_ranks
    for r in range(WORLD):
        msg = results[r]["mismatch"]
        assert msg is not None and "anchors" in msg and "dimension" in msg


def test_an_empty_batch_on_one_rank_keeps_the_collectives_working(two_ranks):
    *_, results, empty_case = two_ranks
    _, (a1, p1, n1) = leaves(empty_case)
    for symmetric in (False, True):
        for reduction in ("mean", "sum", "none"):
            # rank 1's anchors against its own candidates (rank 0 contributes none)
            rows = ref_mnrl_rows(a1, p1, n1, 5.0, "cosine", symmetric)
            want = {"mean": rows.mean(), "sum": rows.sum(), "none": rows}[reduction]
            want_g = torch.autograd.grad(want.sum(), [a1, p1, n1])
            v0, *g0 = results[0]["empty"][(symmetric, reduction)]
            v1, *g1 = results[1]["empty"][(symmetric, reduction)]
            assert v0.shape == ((0,) if reduction == "none" else ())
            if reduction != "none":
                assert float(v0) == 0.0
            assert g0[0].shape == (0, 5) and g0[1].shape == (0, 5) and g0[2] is None
            torch.testing.assert_close(v1, want.detach(), rtol=1e-10, atol=1e-12)
            for got, exp in zip(g1, want_g):
                torch.testing.assert_close(got, exp, rtol=1e-8, atol=1e-10)
    for r in range(WORLD):
        assert results[r]["empty"]["all_reduce"] == 3.0
        msg = results[r]["empty"]["all_empty"]
        assert msg is not None and "anchors" in msg and "empty" in msg


def ref_mnrl_rows(a, p, n, scale, kind, symmetric):
    """Per-anchor loss terms [B] of one process's batch."""
    pool = torch.cat([p] + ([] if n is None else [n.reshape(-1, n.shape[-1])]))
    logits = scale * ref_sim(a, pool, kind)
    target = torch.arange(a.shape[0])
    m = logits.max(dim=1, keepdim=True).values.detach()
    lse = m[:, 0] + torch.log(torch.exp(logits - m).sum(dim=1))
    rows = lse - logits[target, target]
    if symmetric:
        back = scale * ref_sim(p, a, kind)
        m = back.max(dim=1, keepdim=True).values.detach()
        lse = m[:, 0] + torch.log(torch.exp(back - m).sum(dim=1))
        rows = (rows + lse - back[target, target]) / 2
    return rows
