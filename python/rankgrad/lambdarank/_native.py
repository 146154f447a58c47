"""LambdaRank's torch twin (every device; CPU tensors with `backend="torch"`): the loss and its
gradient in torch ops, and the value checks of the Rust kernel for the torch path."""

from __future__ import annotations

import math
from typing import List, Optional

import torch

from .._inputs import GAIN_CAP, check_gain_range
from .._torch_ops import chunk_rows, wide_dtype
from ..ranknet._native import mul3

__all__ = ["lambdarank", "check_targets"]


def lambdarank(s, y, m, w, sigma, k, norm, gain, metric, need_grad):
    """Torch-native twin of the Rust kernel: `(losses [B], valid [B], grad [B, N])`.

    Works in the sorted order; row chunks `[B, rows, N]` of pairs, never `[B, N, N]` at once.
    Gains, maxDCG and the per-list sums (S, the loss) are computed in float64 and score gaps as
    `s_i / 2 - s_j / 2`, so float32 targets up to the gain cap and extreme but finite scores
    give finite results, as on the Rust path (which computes in float64 throughout). Per-item
    weights `w` (SPEC 13) multiply each pair's lambda and loss term by its higher-labelled item's
    weight; S (norm) stays that of the unweighted pairs, as in the Rust kernel."""
    b, n = s.shape
    dev, dt = s.device, s.dtype
    wide = wide_dtype(dev)
    if n < 2:  # no pair anywhere
        z = torch.zeros(b, dtype=dt, device=dev)
        return z, torch.zeros(b, dtype=torch.bool, device=dev), torch.zeros_like(s)
    if m is None:
        m = torch.ones((b, n), dtype=torch.bool, device=dev)
    zero = torch.zeros((), dtype=dt, device=dev)
    s = torch.where(m, s, zero)
    y = torch.where(m, y, zero)
    cnt = m.sum(-1)
    neg_inf = torch.tensor(-math.inf, dtype=dt, device=dev)
    order = torch.where(m, s, neg_inf).argsort(dim=-1, descending=True, stable=True)
    ss, ys, ms = s.gather(-1, order), y.gather(-1, order), m.gather(-1, order)
    # SPEC 13: per-item weights in score order, 0 at padded items; a pair weighs its h's weight
    ws = None if w is None else torch.where(m, w.to(dt), zero).gather(-1, order)
    any_weighted = torch.zeros(b, dtype=torch.bool, device=dev)
    yw = ys.to(wide)
    if gain is None:
        gains = torch.exp2(yw.clamp(0.0, GAIN_CAP)) - 1
    else:
        table = torch.as_tensor(gain, dtype=wide, device=dev)
        gains = table[ys.long().clamp(0, table.numel() - 1)]
    gains = torch.where(ms, gains, torch.zeros((), dtype=wide, device=dev))
    disc_w = 1.0 / torch.log2(torch.arange(n, device=dev, dtype=wide) + 2.0)
    kk = n if k is None else min(k, n)
    # maxDCG@k: the ideal order is the labels descending (LightGBM's convention).
    ideal = torch.where(ms, ys, neg_inf).argsort(dim=-1, descending=True, stable=True)
    max_dcg = (gains.gather(-1, ideal)[:, :kk] * disc_w[:kk]).sum(-1)
    mixed = ((ys != ys[:, :1]) & ms).any(-1)
    rel = (ys > 0) & ms
    nrel = rel.sum(-1)
    if metric == "ndcg":
        inv = torch.where(max_dcg > 0, 1.0 / torch.where(max_dcg > 0, max_dcg, 1.0), 0.0)
        valid = (cnt >= 2) & mixed & (max_dcg > 0)
        gn = (gains * inv[:, None]).to(dt)  # gains / maxDCG: bounded, fits any dtype
    else:
        valid = (cnt >= 2) & mixed & (nrel > 0) & (nrel < cnt)
    disc = disc_w.to(dt)
    last = (cnt - 1).clamp(min=0)
    spread = ss[:, 0] != ss.gather(-1, last[:, None])[:, 0]
    norm_on = (spread & valid)[:, None, None] if norm else None
    # MRR: first and second relevant positions (n when absent).
    big = torch.full_like(rel, n, dtype=torch.long)
    p_long = torch.arange(n, device=dev).expand(b, n)
    rel_pos = torch.where(rel, p_long, big).sort(dim=-1).values
    f, f2 = rel_pos[:, 0], rel_pos[:, 1]

    half = ss * 0.5
    grad_s = torch.zeros((b, n), dtype=dt, device=dev)
    total_s = torch.zeros(b, dtype=wide, device=dev)
    total_l = torch.zeros(b, dtype=wide, device=dev)
    rows = min(kk, n - 1)
    step = chunk_rows(b, n, dev)
    jj = torch.arange(n, device=dev)
    for a in range(0, rows, step):
        e = min(rows, a + step)
        ii = torch.arange(a, e, device=dev)
        yi, yj = ys[:, a:e, None], ys[:, None, :]
        pm = (jj[None, None, :] > ii[None, :, None]) & (jj[None, None, :] < cnt[:, None, None])
        pm = pm & (yi != yj) & valid[:, None, None]
        if metric == "ndcg":
            dd = (gn[:, a:e, None] - gn[:, None, :]) * (disc[a:e, None] - disc[None, :])
        else:
            rr = lambda p: 1.0 / (p.to(dt) + 1.0)  # noqa: E731
            fi = f[:, None, None]
            relj = rel[:, None, :]
            above = (ii[None, :, None] < fi) & relj
            at = (ii[None, :, None] == fi) & ~relj
            first_after = torch.minimum(jj[None, None, :], f2[:, None, None])
            dd = torch.where(above, -(rr(ii)[None, :, None] - rr(fi)), zero)
            dd = torch.where(at, rr(fi) - rr(first_after), dd)
        dd = torch.where(pm, dd, zero)
        dh = half[:, a:e, None] - half[:, None, :]  # (s_i - s_j) / 2, never overflows
        pos = yi > yj
        dsh = torch.where(pos, dh, -dh)  # ds / 2, ds = s_h - s_l
        # hden = den / 2 (den = 0.01 + |ds| with norm, else 1): finite for any finite scores
        hden = torch.where(norm_on, 0.005 + dh.abs(), 0.5) if norm_on is not None else 0.5
        rho = torch.sigmoid(-2.0 * sigma * dsh)
        lam_i = -sigma * (0.5 * dd / hden) * rho  # added to grad[i], taken from grad[j]
        wh = None
        if ws is not None:
            wh = torch.where(pos, ws[:, a:e, None], ws[:, None, :])  # the higher label's weight
            lam_i = lam_i * wh
            any_weighted |= (pm & (wh > 0)).any(-1).any(-1)
        grad_s[:, a:e] += lam_i.sum(-1)
        grad_s -= lam_i.sum(1)
        # S and the loss in the wide dtype (the Rust kernel computes in float64 throughout)
        sdw = torch.where(pos, dd, -dd).to(wide)  # the pair's delta before the norm factor
        hw = hden.to(wide) if isinstance(hden, torch.Tensor) else hden
        dw = dsh.to(wide)
        xw = sigma * dw  # sigma ds / 2: may overflow (sigma > 1, huge gaps), then only exp(-2|xw|) is used
        total_s += (sigma * sdw * torch.sigmoid(-2.0 * xw) / hw).sum((1, 2))
        # delta log(1 + exp(-sigma ds)) = kd (sigma relu(-ds / 2) + log1p(exp(-sigma |ds|)) / 2),
        # kd = sd / hden (den = 2 hden); the linear term by mul3: finite wherever it truly is
        kd = sdw / hw
        sp = mul3(kd, torch.relu(-dw), sigma) + kd * (0.5 * torch.log1p(torch.exp(-2.0 * xw.abs())))
        if wh is not None:
            sp = sp * wh.to(wide)  # (S above stays that of the unweighted pairs)
        total_l += torch.where(pm & (sdw != 0), sp, 0.0).sum((1, 2))  # delta 0 adds exactly 0
    factor = torch.ones_like(total_s)
    if norm:  # log2(1 + S) / S, with log1p: S may be tiny
        ok = total_s > 0
        safe = torch.where(ok, total_s, torch.ones_like(total_s))
        factor = torch.where(ok, torch.log1p(safe) / (math.log(2.0) * safe), factor)
    grad = torch.zeros_like(grad_s).scatter_(-1, order, grad_s * factor[:, None].to(dt))
    if ws is not None:  # a list none of whose pairs weighs anything does not count (its terms are 0)
        valid = valid & any_weighted
    return (total_l * factor).to(dt), valid, grad


def check_targets(s, y, m, w, sigma, k, norm, gain: Optional[List[float]], metric) -> None:
    """The target checks the Rust kernel makes, for the torch path (behind `validate`): the gain
    cap for `2^y - 1` gains, integers inside the table for `label_gain`."""
    if gain is None:
        check_gain_range(y, m)
        return
    real = torch.ones_like(y, dtype=torch.bool) if m is None else m
    bad = ((y < 0) | (y != torch.floor(y)) | (y >= len(gain))) & real
    rows = bad.any(-1)
    if bool(rows.any()):
        bi = int(rows.nonzero()[0, 0])
        v = float(y[bi][bad[bi]][0])
        raise ValueError(
            f"targets: value {v:g} in list {bi} is not an integer in [0, {len(gain)}) "
            f"(the label_gain table has {len(gain)} entries)"
        )
