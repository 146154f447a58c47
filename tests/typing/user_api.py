"""A user's script over the whole public API, checked by `mypy --strict` and `pyright` (make lint).

The annotations are the assertions: numpy in gives numpy out, Tensor in gives Tensor out, and the
GBDT objectives and torch modules are typed well enough for strict checking. It also runs
(`python tests/typing/user_api.py`), so the annotated types are the real ones.
"""

from __future__ import annotations

from typing import Callable, Dict, Optional, Tuple, Union

import lightgbm as lgb
import numpy as np
import numpy.typing as npt
import torch
import xgboost as xgb

import rankgrad
import rankgrad.lightgbm
import rankgrad.nn
import rankgrad.xgboost
from rankgrad.negative_cache import (
    CacheClassificationLoss,
    CacheLossHandler,
    CacheLossReturn,
    CacheManager,
    NegativeCache,
)

F64 = npt.NDArray[np.float64]
# A numpy loss: an array for reduction="none", a numpy scalar or 0-d array for "mean"/"sum".
Loss = Union[np.ndarray, np.generic]


def numpy_api() -> None:
    rng = np.random.default_rng(0)
    s: F64 = rng.normal(size=(4, 7))
    y: F64 = rng.integers(0, 3, size=(4, 7)).astype(np.float64)
    mask: npt.NDArray[np.bool_] = rng.random((4, 7)) > 0.2

    ranks: np.ndarray = rankgrad.approx_ranks(s, 1.0, mask)
    l1: Loss = rankgrad.approx_ndcg_loss(s, y, mask=mask)
    l2: Loss = rankgrad.approx_mrr_loss(s, y, reduction="none")
    l3: Loss = rankgrad.approx_rank_mse_loss(s, y, discount="log2")
    l4: Loss = rankgrad.ranknet_loss(s, y, sigma=1.0, mask=mask)
    l5: Loss = rankgrad.lambdarank_loss(s, y, truncation_level=5)
    n: np.ndarray = rankgrad.ndcg(s, y, k=5, mask=mask)
    m: np.ndarray = rankgrad.mrr(s, y)
    ap: np.ndarray = rankgrad.average_precision(s, y, k=5, mask=mask)
    rec: np.ndarray = rankgrad.recall(s, y, k=5)
    prec: np.ndarray = rankgrad.precision(s, y, k=3)
    l6: Loss = rankgrad.lambda_loss(s, y, "ndcg2pp", sigma=1.0, k=5, mask=mask)
    l7: Loss = rankgrad.softmax_loss(s, y, mask=mask)
    l8: Loss = rankgrad.listmle_loss(s, y, reduction="none")
    print(ap.shape, rec.shape, prec.shape, l6, l7, l8.shape)
    flat_s, flat_y = s.ravel(), y.ravel()
    grad, hess = rankgrad.lambdarank_gradients(flat_s, flat_y, [7, 7, 7, 7], truncation_level=5)
    g: np.ndarray = grad
    h: np.ndarray = hess
    print(ranks.shape, l1, l2.shape, l3, l4, l5, n.shape, m.shape, g.shape, h.shape)

    # ragged <-> padded: the padded scores keep their dtype in the types too
    flat_scores: F64 = rng.normal(size=10)
    qid = np.array([3, 1, 3, 2, 1, 3, 2, 2, 1, 3])
    padded, pmask = rankgrad.pad(flat_scores, qid=qid)
    padded_scores: F64 = padded
    real: npt.NDArray[np.bool_] = pmask
    back: F64 = rankgrad.unpad(padded, pmask, qid=qid)
    by_group, _ = rankgrad.pad(np.arange(10), group=[4, 0, 6], fill=-1)
    ints: npt.NDArray[np.int64] = by_group
    print(padded_scores.shape, real.shape, back.shape, ints.shape)

    threads: int = rankgrad.get_num_threads()
    rankgrad.set_num_threads(threads)


def torch_api() -> None:
    s = torch.randn(4, 7, requires_grad=True)
    y = torch.randint(0, 3, (4, 7)).double()
    mask = torch.rand(4, 7) > 0.2

    ranks: torch.Tensor = rankgrad.approx_ranks(s, 1.0, mask)
    l1: torch.Tensor = rankgrad.approx_ndcg_loss(s, y, mask=mask)
    l2: torch.Tensor = rankgrad.approx_mrr_loss(s, y)
    l3: torch.Tensor = rankgrad.approx_rank_mse_loss(s, y)
    l4: torch.Tensor = rankgrad.ranknet_loss(s, y)
    l5: torch.Tensor = rankgrad.lambdarank_loss(s, y, mask=mask)
    n: torch.Tensor = rankgrad.ndcg(s.detach(), y, k=5)
    m: torch.Tensor = rankgrad.mrr(s.detach(), y)
    ap: torch.Tensor = rankgrad.average_precision(s.detach(), y, k=5, mask=mask)
    rec: torch.Tensor = rankgrad.recall(s.detach(), y, k=5)
    prec: torch.Tensor = rankgrad.precision(s.detach(), y, k=3)
    l6: torch.Tensor = rankgrad.lambda_loss(s, y, "lambdarank", k=5, mask=mask)
    l7: torch.Tensor = rankgrad.softmax_loss(s, y, mask=mask)
    l8: torch.Tensor = rankgrad.listmle_loss(s, y)
    torch.autograd.backward(l1 + l2 + l3 + l4 + l5 + l6 + l7 + l8)
    print(ranks.shape, n.mean().item(), m.mean().item(), ap.shape, rec.shape, prec.shape)

    flat = torch.randn(10, requires_grad=True)
    qid = torch.tensor([3, 1, 3, 2, 1, 3, 2, 2, 1, 3])
    padded, pmask = rankgrad.pad(flat, qid=qid, fill=0.0)
    padded_scores: torch.Tensor = padded
    real: torch.Tensor = pmask
    back: torch.Tensor = rankgrad.unpad(padded, pmask, qid=qid)
    torch.autograd.backward(
        rankgrad.approx_ndcg_loss(padded_scores, (padded > 0).double(), mask=real) + back.sum()
    )

    criteria: Tuple[torch.nn.Module, ...] = (
        rankgrad.nn.ApproxNDCGLoss(temperature=0.5),
        rankgrad.nn.ApproxMRRLoss(),
        rankgrad.nn.ApproxRankMSELoss(),
        rankgrad.nn.RankNetLoss(sigma=1.0),
        rankgrad.nn.LambdaRankLoss(truncation_level=5),
        rankgrad.nn.LambdaLoss("ndcg2pp", k=5),
        rankgrad.nn.SoftmaxLoss(),
        rankgrad.nn.ListMLELoss(),
    )
    for criterion in criteria:
        out: torch.Tensor = criterion(s, y, mask)
        torch.autograd.backward(out)
    ndcg_loss: torch.Tensor = rankgrad.nn.ApproxNDCGLoss()(s, y)
    lambda_loss: torch.Tensor = rankgrad.nn.LambdaRankLoss()(s, y)
    ranknet: torch.Tensor = rankgrad.nn.RankNetLoss()(s, y, mask)
    print(ndcg_loss.item(), lambda_loss.item(), ranknet.item())
    # forward's own return type (module(...) goes through torch's untyped __call__)
    forwards: Tuple[torch.Tensor, ...] = (
        rankgrad.nn.ApproxNDCGLoss().forward(s, y, mask),
        rankgrad.nn.ApproxMRRLoss().forward(s, y),
        rankgrad.nn.ApproxRankMSELoss().forward(s, y),
        rankgrad.nn.RankNetLoss().forward(s, y, mask),
        rankgrad.nn.LambdaRankLoss().forward(s, y, mask),
        rankgrad.nn.LambdaLoss().forward(s, y, mask),
        rankgrad.nn.SoftmaxLoss().forward(s, y, mask),
        rankgrad.nn.ListMLELoss().forward(s, y),
        rankgrad.nn.MultipleNegativesRankingLoss().forward(torch.randn(8, 16), torch.randn(8, 16)),
        rankgrad.nn.L2Regularization().forward(torch.randn(8, 16), torch.randn(8, 16)),
    )
    print(len(forwards))

    q, d = torch.randn(8, 16), torch.randn(8, 16)
    mnrl: torch.Tensor = rankgrad.nn.MultipleNegativesRankingLoss(scale=20.0)(q, d, torch.randn(8, 3, 16))
    reg: torch.Tensor = (
        rankgrad.nn.L1Regularization()(q, d)
        + rankgrad.nn.L2Regularization(1e-3, 1e-3)(q, d)
        + rankgrad.nn.FLOPSRegularization()(q, d)
    )
    print(mnrl.item(), reg.item())


def weights_api() -> None:
    """SPEC 13: `weights=` per item `[B, N]` or per list `[B]`, numpy and torch."""
    rng = np.random.default_rng(2)
    s: F64 = rng.normal(size=(4, 7))
    y: F64 = rng.integers(0, 3, size=(4, 7)).astype(np.float64)
    w_item: F64 = rng.random((4, 7))
    w_list: F64 = rng.random(4)
    a1: Loss = rankgrad.approx_ndcg_loss(s, y, weights=w_item)
    a2: Loss = rankgrad.approx_mrr_loss(s, y, weights=w_list, method="exact")
    a3: Loss = rankgrad.approx_rank_mse_loss(s, y, weights=None, reduction="none")
    a4: Loss = rankgrad.softmax_loss(s, y, weights=w_item, normalize=False)
    a5: Loss = rankgrad.listmle_loss(s, y, weights=w_list)
    a6: Loss = rankgrad.ranknet_loss(s, y, weights=w_item)
    a7: Loss = rankgrad.lambdarank_loss(s, y, weights=w_list, reduction="none")
    a8: Loss = rankgrad.lambda_loss(s, y, "ndcg1", weights=w_item)
    print(a1, a2, a3, a4, a5, a6, a7, a8)

    st = torch.randn(4, 7, requires_grad=True)
    yt = torch.randint(0, 3, (4, 7)).double()
    wt = torch.rand(4, 7)
    t1: torch.Tensor = rankgrad.approx_ndcg_loss(st, yt, weights=wt)
    t2: torch.Tensor = rankgrad.approx_mrr_loss(st, yt, weights=torch.rand(4))
    t3: torch.Tensor = rankgrad.approx_rank_mse_loss(st, yt, weights=w_item)  # numpy weights for a tensor
    t4: torch.Tensor = rankgrad.softmax_loss(st, yt, weights=wt)
    t5: torch.Tensor = rankgrad.listmle_loss(st, yt, weights=wt)
    t6: torch.Tensor = rankgrad.ranknet_loss(st, yt, weights=wt)
    t7: torch.Tensor = rankgrad.lambdarank_loss(st, yt, weights=torch.rand(4))
    t8: torch.Tensor = rankgrad.lambda_loss(st, yt, weights=wt)
    torch.autograd.backward(t1 + t2 + t3 + t4 + t5 + t6 + t7 + t8)
    modules: Tuple[torch.Tensor, ...] = (
        rankgrad.nn.ApproxNDCGLoss().forward(st, yt, None, wt),
        rankgrad.nn.ApproxMRRLoss().forward(st, yt, weights=wt),
        rankgrad.nn.ApproxRankMSELoss().forward(st, yt, weights=torch.rand(4)),
        rankgrad.nn.SoftmaxLoss().forward(st, yt, weights=wt),
        rankgrad.nn.ListMLELoss().forward(st, yt, None, wt),
        rankgrad.nn.RankNetLoss().forward(st, yt, weights=wt),
        rankgrad.nn.LambdaRankLoss().forward(st, yt, None, torch.rand(4)),
        rankgrad.nn.LambdaLoss().forward(st, yt, weights=wt),
    )
    print(len(modules))


def negative_cache_api() -> None:
    dim, vocab = 8, 50
    tower = torch.nn.EmbeddingBag(vocab, dim, mode="mean")

    def doc_network(data: Dict[str, torch.Tensor]) -> torch.Tensor:
        out: torch.Tensor = tower(data["tokens"])
        return out

    manager = CacheManager({"tokens": ((4,), torch.int64), "embedding": ((dim,), torch.float32)}, 32)
    cache: NegativeCache = manager.init_cache("cpu")
    size: int = cache.cache_size
    transform: Optional[Callable[[torch.Tensor], torch.Tensor]] = None
    loss = CacheClassificationLoss("embedding", ["tokens"], score_transform=transform, top_k=None)
    handler = CacheLossHandler(manager, loss)
    for _ in range(3):
        tokens = torch.randint(0, vocab, (6, 4))
        q, d = torch.randn(6, dim), doc_network({"tokens": tokens})
        ret: CacheLossReturn = handler(doc_network, q, d, {"tokens": tokens})
        training: torch.Tensor = ret.training_loss
        torch.autograd.backward(training)
    stepped: NegativeCache = manager.update_cache(handler.cache, new_items=None)
    print(size, stepped.cache_size)


def gbdt_api() -> None:
    rng = np.random.default_rng(1)
    group = [40, 60, 30]
    n = sum(group)
    x, y = rng.normal(size=(n, 4)), rng.integers(0, 3, size=n).astype(np.float64)

    lgb_obj = rankgrad.lightgbm.LambdaRankObjective(truncation_level=10, sigma=1.0)
    train = lgb.Dataset(x, y, group=group)
    booster: lgb.Booster = lgb.train(
        {"objective": lgb_obj, "min_data_in_leaf": 5, "verbose": -1}, train, num_boost_round=3
    )
    grad, hess = lgb_obj(booster.predict(x), train)
    g: np.ndarray = grad
    h: np.ndarray = hess
    metric = rankgrad.lightgbm.NDCGMetric(10)
    print(g.shape, h.shape, metric)

    # position-debiased LambdaRank: positions from the Dataset, factors learned per round
    positions = np.tile(np.arange(10), n // 10 + 1)[:n]
    biased = rankgrad.lightgbm.LambdaRankObjective(position_bias_regularization=0.1, learning_rate=0.1)
    lgb.train(
        {"objective": biased, "min_data_in_leaf": 5, "verbose": -1},
        lgb.Dataset(x, y, group=group, position=positions),
        num_boost_round=2,
    )
    factors: npt.NDArray[np.float32] = biased.position_biases_
    ids: npt.NDArray[np.int64] = biased.position_ids_
    ranker_obj = rankgrad.lightgbm.LambdaRankObjective(positions=positions)
    ranker = lgb.LGBMRanker(objective=ranker_obj, n_estimators=2, min_child_samples=5, verbose=-1)
    ranker.fit(x, y, group=group)
    print(factors.shape, ids.shape)

    xe = rankgrad.lightgbm.XENDCGObjective(seed=3)
    lgb.train({"objective": xe, "min_data_in_leaf": 5, "verbose": -1}, train, num_boost_round=2)
    seed: int = xe.seed
    xe.reset()
    xe_grad, xe_hess = rankgrad.lightgbm.xendcg_gradients(
        booster.predict(x), y, group, gammas=rng.random(n), weights=None
    )
    xeg: F64 = xe_grad
    xeh: F64 = xe_hess
    metrics: Tuple[rankgrad.lightgbm.RankingMetric, ...] = (
        rankgrad.lightgbm.AveragePrecisionMetric(10),
        rankgrad.lightgbm.RecallMetric(10),
        rankgrad.lightgbm.PrecisionMetric(5),
        rankgrad.lightgbm.MRRMetric(),
    )
    values = [mt.evaluate(booster.predict(x), y, group) for mt in metrics]
    scores: Dict[str, float] = {repr(mt): v for mt, v in zip(metrics, values)}
    print(seed, xeg.shape, xeh.shape, scores)

    xgb_obj = rankgrad.xgboost.LambdaRankObjective(truncation_level=10)
    dtrain = xgb.DMatrix(x, label=y, group=group)
    xbooster: xgb.Booster = xgb.train({"tree_method": "hist"}, dtrain, num_boost_round=3, obj=xgb_obj)
    xgrad, xhess = xgb_obj(xbooster.predict(dtrain), dtrain)
    xg: np.ndarray = xgrad
    xh: np.ndarray = xhess
    print(xg.shape, xh.shape, rankgrad.xgboost.MRRMetric(5))
    xxe = rankgrad.xgboost.XENDCGObjective(seed=1)
    xgb.train({"tree_method": "hist"}, dtrain, num_boost_round=2, obj=xxe)
    xxg, xxh = xxe(xbooster.predict(dtrain), dtrain)
    xxeg: F64 = xxg
    xxeh: F64 = xxh
    print(xxeg.shape, xxeh.shape, rankgrad.xgboost.AveragePrecisionMetric(5))


if __name__ == "__main__":
    numpy_api()
    torch_api()
    weights_api()
    negative_cache_api()
    gbdt_api()
