"""Fast summation for the approximate-rank family's torch twin (`method="fast"`).

The three sums of `_native` (ranks, `J^T c`, and d<v, J^T c>/ds) are all of one shape,

    F_i = sum_j w_j K(x_j - x_i),   x = s / T,  K in {sigmoid, sigmoid', sigmoid''},

over the real items of each list, with one or more weight vectors `w` (ranks: 1; vjp: c, 1;
vjp_grad: c, c v, 1, v). They are evaluated in O(N log N + N p) per list, batched over lists
and device-agnostic (torch ops only; data-dependent shapes, one host sync per shape):

1. Per list the real items are sorted ascending by s (stable) and flattened over the batch. A
   new *segment* starts at every list and wherever `(s_{k+1} - s_k) / T > FAST_SATURATION` (D;
   +inf for huge scores is a break). Across a break every kernel is saturated: sigmoid is 1
   for sources above and 0 below, sigmoid' and sigmoid'' are 0 (prefix sums of weights).
   Inside a segment local coordinates `y = (s - s_seg0) / T` never overflow and keep ties
   exact; cells `floor(y / h)` (h = `FAST_CELL`), `u = y / h - cell` in [0, 1); only occupied
   cells exist.
2. A segment of `n` items in `C` occupied cells is interpolated iff
   `n >= FAST_MIN_SEGMENT and n >= FAST_MIN_OCCUPANCY * C`; otherwise its pairs within distance
   D (in y) are summed directly (a loop over sorted-order offsets, vectorised over items) and
   pairs beyond D are saturated. The rule is the Rust twin's, so both take the same branches.
3. Interpolation: p = `FAST_NODES` Chebyshev nodes on [0, 1], `tau_a = (1 - cos((2a+1) pi /
   (2p))) / 2`, barycentric weights `(-1)^a sin((2a+1) pi / (2p))` (a point exactly on a node
   takes that node's value). Anterpolation `Q[B, b] = sum_{j in B} w_j L_b(u_j)`; cell to cell
   `Phi[A, a] = sum_{|o| <= W} sum_b K(h (o + tau_b - tau_a)) Q[A + o, b]`, the window
   `W = ceil(D / h) + 1` cells each side (neighbour cells of the same segment found by
   `searchsorted` on integer cell keys; the Q rows of all offsets gathered per chunk of cells
   and multiplied by the stacked p x p matrices in one matmul); beyond the window sigmoid is
   saturated (prefix sums again); back `F_i = sum_a L_a(u_i) Phi[cell(i), a]`.

Memory is O(B N p) (item chunks bound the `[items, q, p]` temporaries and cell chunks the
`[cells, q, (2W+1) p]` gather); there is no N x N tensor and no grid over the score range. Work
is O(N log N + N p + C (2W+1) p^2) per list (C occupied cells): most for dense runs of cells
holding few items each. Everything is computed in float64 (float32 on MPS) and rounded once
to the scores' dtype.

Constants: the Rust kernels' (`rankgrad._core`): `FAST_CELL = 1.0`, `FAST_NODES = 12`,
`FAST_SATURATION = 44.0`, `FAST_MIN_OCCUPANCY = 4`, `FAST_MIN_SEGMENT = 16`.

Error: sigmoid and its derivatives are analytic in the strip |Im d| < pi, so the tensor-product
Chebyshev interpolation on cells of width h = 1 converges like rho^-p, rho = 2 pi / h +
sqrt(4 pi^2 / h^2 + 1) ~ 12.6, and a saturated pair is off by at most e^-D ~ 8e-20. Measured
per pair with p = 12: ~1.4e-13 (sigmoid), ~6e-13 (sigmoid'), ~2.5e-12 (sigmoid'') absolutely,
less where the kernel is small. In float64 the ranks are within 1e-10 max(1, |r|) of the exact
pair sums and vjp within 1e-10 max_k S_k (S_k: the same sum over the absolute values of its
terms). vjp_grad (second derivatives) is within 1e-10 of the same scale taken with the envelope
sigmoid' >= |sigmoid''| (the Rust kernels' bound), and within 5e-9 of its own absolute-term scale:
for lists much narrower than T that scale, ~|d| / 8, is tiny and the interpolation error of
sigmoid'' relative to it reaches ~2.3e-9 near a cell's edge. float32 results are the
float64 sums rounded once (~6e-8 relative), well inside the exact float32 kernel's own error.
Local coordinates resolve score differences down to an ulp of `(s - s_seg0) / T`. Tested in
tests/test_approx_fast.py.
"""

from __future__ import annotations

import math
from typing import Dict, Optional, Tuple

import torch

from .. import _core
from .._torch_ops import wide_dtype

# The Rust kernels' constants (src/approx/fast.rs), one owner: the twins take the same choices.
FAST_CELL: float = float(_core.FAST_CELL)
FAST_NODES: int = int(_core.FAST_NODES)
FAST_SATURATION: float = float(_core.FAST_SATURATION)
FAST_MIN_OCCUPANCY: float = float(_core.FAST_MIN_OCCUPANCY)
FAST_MIN_SEGMENT: int = int(_core.FAST_MIN_SEGMENT)

SIGMOID, D1, D2 = "sigmoid", "sigmoid'", "sigmoid''"

_SHIFT = 34  # cell key = segment << _SHIFT | cell: cells below 2^34 - W (n_seg * D < 1.7e10)


def _budget(device: torch.device) -> int:
    """Elements per temporary of a chunked stage (on CPU small enough to stay in cache and be
    reused by the allocator: large fresh temporaries cost more in page faults than in flops)."""
    return (1 << 24) if device.type == "cuda" else (1 << 18)


def _window() -> int:
    return math.ceil(FAST_SATURATION / FAST_CELL) + 1


# ---------------------------------------------------------------- kernels, nodes, cached matrices
def _kernel(kind: str, d: torch.Tensor) -> torch.Tensor:
    """K(d), accurate in both tails (sigmoid' = sigmoid(d) sigmoid(-d), sigmoid'' =
    -sigmoid'(d) tanh(d / 2))."""
    if kind == SIGMOID:
        return torch.sigmoid(d)
    d1 = torch.sigmoid(d) * torch.sigmoid(-d)
    return d1 if kind == D1 else -d1 * torch.tanh(0.5 * d)


def _kernel_pair(kind: str, d: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """(K(d), K(-d))."""
    if kind == SIGMOID:
        return torch.sigmoid(d), torch.sigmoid(-d)
    k = _kernel(kind, d)
    return k, (k if kind == D1 else -k)


_CACHE: Dict[Tuple[object, ...], Tuple[torch.Tensor, ...]] = {}


def _nodes(dtype: torch.dtype, device: torch.device) -> Tuple[torch.Tensor, torch.Tensor]:
    """Chebyshev nodes on [0, 1] and their barycentric weights, `[p]` each."""
    key = ("nodes", FAST_NODES, dtype, device)
    if key not in _CACHE:
        p = FAST_NODES
        a = torch.arange(p, dtype=torch.float64)
        ang = (2 * a + 1) * math.pi / (2 * p)
        tau = (1 - torch.cos(ang)) / 2
        lam = torch.sin(ang) * (1 - 2 * (a % 2))
        _CACHE[key] = (tau.to(device, dtype), lam.to(device, dtype))
    return _CACHE[key]  # type: ignore[return-value]


def _matrices(kind: str, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """`[2W+1, p, p]`: entry `[o + W, b, a] = K(h (o + tau_b - tau_a))`."""
    key = ("mats", kind, FAST_NODES, FAST_CELL, FAST_SATURATION, dtype, device)
    if key not in _CACHE:
        w = _window()
        tau, _ = _nodes(torch.float64, torch.device("cpu"))
        o = torch.arange(-w, w + 1, dtype=torch.float64)
        d = FAST_CELL * (o[:, None, None] + tau[None, :, None] - tau[None, None, :])
        _CACHE[key] = (_kernel(kind, d).to(device, dtype).contiguous(),)
    return _CACHE[key][0]


def _lagrange(u: torch.Tensor, tau: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """`[m, p]` Lagrange basis values at `u` (barycentric; exactly on a node: that node's 1)."""
    t = lam / (u[:, None] - tau)
    t.div_(t.sum(-1, keepdim=True))
    # on a node t is +-inf there, the row's sum too: inf / inf = NaN at the node, 0 elsewhere
    return t.nan_to_num_(nan=1.0)


# ---------------------------------------------------------------- the engine
def _at(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """`x[idx]` along dim 0 (index_select: several times faster than advanced indexing on CPU)."""
    return x.index_select(0, idx)


def _sums(
    s: torch.Tensor, m: Optional[torch.Tensor], temperature: float, kind: str, w: Optional[torch.Tensor]
) -> torch.Tensor:
    """`F [B, N, q]`, `F_i = sum_j w_j K(x_j - x_i)` over the real items j of i's list (j = i
    included), in the wide dtype, 0 at padded positions. `w [B, N, q]` in the wide dtype (None:
    one weight vector of ones)."""
    b, n = s.shape
    wd, dev = wide_dtype(s.device), s.device
    q = 1 if w is None else w.shape[-1]
    out = torch.zeros(b * n, q, dtype=wd, device=dev)
    if b * n == 0:
        return out.view(b, n, q)
    t = float(temperature)

    # the real items of every list, ascending (padded ones sort last, as +inf), flattened
    key = s if m is None else torch.where(m, s, torch.full((), math.inf, dtype=s.dtype, device=dev))
    vals, order = torch.sort(key, dim=-1, stable=True)
    del key
    order += torch.arange(0, b * n, n, device=dev)[:, None]
    if m is None:
        n_list = torch.full((b,), n, device=dev)
        xs, pos = vals.reshape(-1).to(wd), order.reshape(-1)
    else:
        n_list = m.sum(-1)
        real = torch.arange(n, device=dev) < n_list[:, None]
        xs, pos = vals[real].to(wd), order[real]
        del real
    del vals, order
    count = pos.numel()
    if count == 0:
        return out.view(b, n, q)
    list_end = torch.cumsum(n_list, 0)
    ws = None if w is None else _at(w.reshape(-1, q), pos)

    # segments (a new one at every list and wherever a gap exceeds D) and occupied cells
    brk = torch.empty(count, dtype=torch.bool, device=dev)
    brk[0] = True
    torch.gt(torch.diff(xs) / t, FAST_SATURATION, out=brk[1:])
    brk[(list_end - n_list)[n_list > 0]] = True
    seg = torch.cumsum(brk, 0) - 1
    seg_start = brk.nonzero()[:, 0]
    seg_end = torch.cat([seg_start[1:], seg_start.new_full((1,), count)])
    y = (xs - _at(_at(xs, seg_start), seg)) / t  # local coordinates: never overflow, ties stay exact
    del xs
    yc = y if FAST_CELL == 1.0 else y / FAST_CELL
    cellf = torch.floor(yc)
    u = yc - cellf
    del yc
    cell = cellf.long()
    del cellf
    newc = brk.clone()
    newc[1:] |= cell[1:] != cell[:-1]
    n_seg = seg_end - seg_start
    c_seg = torch.bincount(seg[newc], minlength=seg_start.numel())
    interp = (n_seg >= FAST_MIN_SEGMENT) & (n_seg >= FAST_MIN_OCCUPANCY * c_seg)
    item_interp = _at(interp, seg)
    n_interp = int(item_interp.sum())

    direct = None
    if n_interp < count:  # the directly summed items' own arrays (whole segments, ascending)
        di = (~item_interp).nonzero()[:, 0]
        wdi = torch.ones(di.numel(), 1, dtype=wd, device=dev) if ws is None else _at(ws, di)
        direct = (di, _at(y, di), _at(seg, di), wdi, n_seg[~interp].max())
    del y, brk, item_interp
    f = torch.zeros(count, q, dtype=wd, device=dev)
    end = torch.empty(count, dtype=torch.long, device=dev) if kind == SIGMOID else None
    if n_interp == count:
        _interpolated(kind, f, end, None, u, cell, seg, ws, newc, seg_end)
    elif n_interp > 0:
        ii = interp.repeat_interleave(n_seg).nonzero()[:, 0]
        wi = None if ws is None else _at(ws, ii)
        _interpolated(kind, f, end, ii, _at(u, ii), _at(cell, ii), _at(seg, ii), wi, _at(newc, ii), seg_end)
    del u, cell, newc, seg
    if direct is not None:
        di, yd, sd, wdi, longest = direct
        _direct(kind, f, end, di, yd, sd, wdi, seg_end, longest)
        del di, yd, sd, wdi, direct
    if kind == SIGMOID:  # saturated sources above the window: their weights, by prefix sums
        assert end is not None
        item_end = torch.repeat_interleave(list_end, n_list, output_size=count)
        if ws is None:
            f += (item_end - end).to(wd)[:, None]
        else:
            csum = torch.cat([ws.new_zeros(1, q), torch.cumsum(ws, 0)])
            f += _at(csum, item_end) - _at(csum, end)
    out.index_copy_(0, pos, f)
    return out.view(b, n, q)


def _interpolated(
    kind: str,
    f: torch.Tensor,
    end: Optional[torch.Tensor],
    ii: Optional[torch.Tensor],
    u: torch.Tensor,
    cell: torch.Tensor,
    seg: torch.Tensor,
    ws: Optional[torch.Tensor],
    newc: torch.Tensor,
    seg_end: torch.Tensor,
) -> None:
    """The items of the interpolated segments (global item indices `ii`, None for all; weights
    `ws [m, q]`, None for ones): their sums into `f[ii]` and, for the sigmoid, the first item
    above each one's window into `end[ii]`."""
    wd, dev = u.dtype, u.device
    m, q = u.shape[0], f.shape[1]
    p = FAST_NODES
    tau, lam = _nodes(wd, dev)
    cid = torch.cumsum(newc, 0) - 1
    cstart = newc.nonzero()[:, 0]  # compact item index of each cell's first item
    n_cells = cstart.numel()
    cseg = _at(seg, cstart)
    ckey = (cseg << _SHIFT) + _at(cell, cstart)
    w_full = _window()
    span = int(cell.max())  # cells of a segment start at 0: offsets beyond its span find nothing
    wu = min(w_full, span)

    # anterpolation: Q[cell, k, b] = sum_j w_jk L_b(u_j)
    qmat = torch.zeros(n_cells + 1, q, p, dtype=wd, device=dev)  # the last row stays 0 (no cell)
    step = max(1, _budget(dev) // (p * q))
    kept = [] if m * p <= 1 << 22 else None  # small inputs: keep L for the way back
    for a in range(0, m, step):
        e = min(m, a + step)
        basis = _lagrange(u[a:e], tau, lam)
        src = basis[:, None, :] if ws is None else ws[a:e, :, None] * basis[:, None, :]
        qmat.index_add_(0, cid[a:e], src)
        if kept is not None:
            kept.append(basis)
    qt = qmat.permute(1, 0, 2).contiguous()  # [q, C + 1, p]
    del qmat

    # cell to cell over the offsets -wu..wu
    mats = _matrices(kind, wd, dev)[w_full - wu : w_full + wu + 1]
    n_off = 2 * wu + 1
    stacked = mats.reshape(n_off * p, p)  # [(o, b), a]
    offs = torch.arange(-wu, wu + 1, device=dev)
    phi = torch.empty(n_cells, q, p, dtype=wd, device=dev)
    cstep = max(1, 2 * _budget(dev) // (n_off * p * q))
    for a in range(0, n_cells, cstep):
        e = min(n_cells, a + cstep)
        tgt = ckey[a:e, None] + offs
        idx = torch.searchsorted(ckey, tgt)
        found = _at(ckey, idx.view(-1).clamp(max=n_cells - 1)).view_as(tgt) == tgt
        idx.masked_fill_(~found, n_cells)  # Q's zero row
        g = qt.index_select(1, idx.view(-1)).view(q * (e - a), n_off * p)
        phi[a:e] = (g @ stacked).view(q, e - a, p).permute(1, 0, 2)
    del qt

    # back to the items: F_i = sum_a L_a(u_i) Phi[cell(i), a]
    for k, a in enumerate(range(0, m, step)):
        e = min(m, a + step)
        basis = kept[k] if kept is not None else _lagrange(u[a:e], tau, lam)
        fi = torch.bmm(_at(phi, cid[a:e]), basis[:, :, None])[..., 0]
        if ii is None:
            f[a:e] += fi
        else:
            f.index_add_(0, ii[a:e], fi)

    if end is not None:  # sigmoid: sources in cells beyond A + W (same segment) are saturated
        nxt = torch.searchsorted(ckey, ckey + w_full, right=True)
        nxt_c = nxt.clamp(max=n_cells - 1)
        same = (nxt < n_cells) & (_at(cseg, nxt_c) == cseg)
        cstart_g = cstart if ii is None else _at(ii, cstart)
        cend = torch.where(same, _at(cstart_g, nxt_c), _at(seg_end, cseg))
        if ii is None:
            end[:] = _at(cend, cid)
        else:
            end.index_copy_(0, ii, _at(cend, cid))


def _direct(
    kind: str,
    f: torch.Tensor,
    end: Optional[torch.Tensor],
    di: torch.Tensor,
    y: torch.Tensor,
    seg: torch.Tensor,
    ws: torch.Tensor,
    seg_end: torch.Tensor,
    longest: torch.Tensor,
) -> None:
    """The items of the directly summed segments (global item indices `di`, ascending, whole
    segments): pairs within distance D summed, the rest saturated."""
    m = di.numel()
    dev = y.device
    big_d = FAST_SATURATION
    ar = torch.arange(m, device=dev)
    last = ar + (_at(seg_end, seg) - di) - 1  # the segment's last item, compact index
    # cnt_i = #{j > i in the segment : y_j - y_i <= D}, by a vectorised binary search (the same
    # test as the pair loop below, so every pair is counted exactly once)
    lo, hi = ar, last
    for _ in range(max(1, int(longest)).bit_length()):
        mid = (lo + hi + 1) >> 1
        ok = (_at(y, mid) - y) <= big_d
        lo = torch.where(ok, mid, lo)
        hi = torch.where(ok, hi, mid - 1)
    cnt = lo - ar
    del lo, hi, last
    fd = torch.zeros_like(ws)
    if kind == SIGMOID:
        fd += 0.5 * ws  # the self term sigmoid(0); sigmoid' pairs cancel and sigmoid''(0) = 0
        assert end is not None
        end.index_copy_(0, di, di + cnt + 1)
    top = int(cnt.max())
    if top > 0:
        ge = torch.flip(torch.cumsum(torch.flip(torch.bincount(cnt, minlength=top + 1), (0,)), 0), (0,))
        ge = ge.tolist()  # ge[k] = #{i : cnt_i >= k}
        by_cnt = torch.argsort(cnt, descending=True)
        for k in range(1, top + 1):
            if 4 * ge[k] >= m:  # most items still have a k-th neighbour: whole slices
                on = (cnt[:-k] >= k).to(ws.dtype)
                kd, km = _kernel_pair(kind, y[k:] - y[:-k])
                fd[:-k] += ws[k:] * (kd * on)[:, None]
                fd[k:] += ws[:-k] * (km * on)[:, None]
            else:
                i = by_cnt[: ge[k]]
                j = i + k
                kd, km = _kernel_pair(kind, _at(y, j) - _at(y, i))
                fd.index_add_(0, i, _at(ws, j) * kd[:, None])
                fd.index_add_(0, j, _at(ws, i) * km[:, None])
    f.index_add_(0, di, fd)


# ---------------------------------------------------------------- the three sums
def _prep(
    s: torch.Tensor, m: Optional[torch.Tensor], *vecs: torch.Tensor
) -> Tuple[torch.Tensor, Tuple[torch.Tensor, ...]]:
    """(the mask as 0/1 in the wide dtype, the vectors in it with padded entries 0)."""
    wd = wide_dtype(s.device)
    mf = torch.ones(s.shape, dtype=wd, device=s.device) if m is None else m.to(wd)
    zero = torch.zeros((), dtype=wd, device=s.device)
    out = tuple(v.to(wd) if m is None else torch.where(m, v.to(wd), zero) for v in vecs)
    return mf, out


def _out(x: torch.Tensor, s: torch.Tensor, m: Optional[torch.Tensor]) -> torch.Tensor:
    """Rounded once to s's dtype; exactly 0 at padded positions."""
    x = x.to(s.dtype)
    return x if m is None else torch.where(m, x, torch.zeros((), dtype=s.dtype, device=s.device))


def ranks(s: torch.Tensor, m: Optional[torch.Tensor], temperature: float) -> torch.Tensor:
    """`r_i = 1/2 + sum_j sigmoid(x_j - x_i)` `[B, N]` in s's dtype, 0 at padded positions."""
    return _out(0.5 + _sums(s, m, temperature, SIGMOID, None)[..., 0], s, m)


def vjp(s: torch.Tensor, m: Optional[torch.Tensor], temperature: float, c: torch.Tensor) -> torch.Tensor:
    """`(J^T c)_k = (1/T)[sum_i sigmoid'(x_i - x_k) c_i - c_k sum_i sigmoid'(x_i - x_k)]` `[B, N]`."""
    mf, (c,) = _prep(s, m, c)
    fc, f1 = _sums(s, m, temperature, D1, torch.stack((c, mf), -1)).unbind(-1)
    return _out((fc - c * f1) / temperature, s, m)


def vjp_grad(
    s: torch.Tensor, m: Optional[torch.Tensor], temperature: float, c: torch.Tensor, v: torch.Tensor
) -> torch.Tensor:
    """`h_l = (1/T^2) sum_{k != l} sigmoid''(x_l - x_k)(c_k - c_l)(v_l - v_k)` `[B, N]`."""
    mf, (c, v) = _prep(s, m, c, v)
    w = torch.stack((c, c * v, mf, v), -1)
    fc, fcv, f1, fv = _sums(s, m, temperature, D2, w).unbind(-1)
    # sigmoid''(x_l - x_k) = -sigmoid''(x_k - x_l): h = -(v F[c] - F[cv] - c v F[1] + c F[v]) / T^2
    return _out((fcv - v * fc + c * v * f1 - c * fv) / (temperature * temperature), s, m)
