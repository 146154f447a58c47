"""Custom ops of the approximate-rank family: one `rankgrad::<name>` per kernel.

    r_i = 1 + sum_{j != i} sigmoid((s_j - s_i) / T)                    approx_ranks
    (J^T c)_k = (1/T) sum_{i != k} sigmoid'(d_ki) (c_i - c_k)           approx_ranks_backward
    h_l = (1/T^2) sum_{k != l} sigmoid''(d_lk) (c_k - c_l) (v_l - v_k)  approx_ranks_double_backward

with `d_lk = (s_l - s_k) / T`; the Jacobian `J = dr/ds` is symmetric, so `J^T c` is also the
JVP. `h` is the gradient of `<v, J^T c>` with respect to the scores (c held fixed).

Kernels: on CPU the Rust core (`_core`), unless `native=True` (backend="torch"); on any other
device the torch-native implementation below, which walks the pairs in row chunks
(`_inputs.chunk_rows`) so no `[B, N, N]` tensor is held. `approx_loss` (the fused per-list
loss and its gradient) is CPU-only Rust; the torch-native losses are composites over the
ranks ops (approx.py). Autograd lives in approx.py (autograd.Function with setup_context, so
torch.func works); the ops carry fake implementations (meta tensors, torch.compile) and the
rows vmap rule.
"""

# No `from __future__ import annotations` here: torch < 2.7 infers the op schemas from real
# annotation objects, not strings.
from typing import Optional, Tuple

import torch

from . import _core
from ._custom_ops import custom_op_rows, np_in, t_out
from ._inputs import chunk_rows


def _prep(s: torch.Tensor, m: Optional[torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
    """(scores with padded entries zeroed, mask as 0/1 in the scores' dtype)."""
    if m is None:
        return s, torch.ones_like(s)
    return torch.where(m, s, torch.zeros((), dtype=s.dtype, device=s.device)), m.to(s.dtype)


def _pair_rows(s: torch.Tensor, a: int, e: int, inv_t: float) -> torch.Tensor:
    """sigmoid((s_i - s_j) / T) for rows i in [a, e): `[B, e - a, N]`."""
    return (s[:, a:e, None] - s[:, None, :]).mul_(inv_t).sigmoid_()


def _native_ranks(s: torch.Tensor, m: Optional[torch.Tensor], temperature: float) -> torch.Tensor:
    s, mf = _prep(s, m)
    b, n = s.shape
    r = torch.empty_like(s)
    step = chunk_rows(b, n, s.device)
    for a in range(0, n, step):
        e = min(n, a + step)
        q = (s[:, None, :] - s[:, a:e, None]).mul_(1.0 / temperature).sigmoid_()  # sigmoid(s_j - s_i)
        r[:, a:e] = torch.bmm(q, mf[:, :, None])[..., 0] + 0.5  # the j == i term is sigmoid(0) = 1/2
    return r * mf


def _native_vjp(
    s: torch.Tensor, m: Optional[torch.Tensor], temperature: float, c: torch.Tensor
) -> torch.Tensor:
    s, mf = _prep(s, m)
    b, n = s.shape
    inv_t = 1.0 / temperature
    c = c.to(s.dtype) * mf
    rhs = torch.stack((c, mf), dim=-1)  # [B, N, 2]
    g = torch.empty_like(s)
    step = chunk_rows(b, n, s.device)
    for a in range(0, n, step):
        e = min(n, a + step)
        p = _pair_rows(s, a, e, inv_t)
        w = p.sub_(p.square())  # sigmoid' = p (1 - p), even in its argument
        wc, w1 = torch.bmm(w, rhs).unbind(-1)
        g[:, a:e] = (wc - c[:, a:e] * w1) * inv_t
    return g * mf


def _native_vjp_grad(
    s: torch.Tensor, m: Optional[torch.Tensor], temperature: float, c: torch.Tensor, v: torch.Tensor
) -> torch.Tensor:
    s, mf = _prep(s, m)
    b, n = s.shape
    inv_t = 1.0 / temperature
    c, v = c.to(s.dtype) * mf, v.to(s.dtype) * mf
    # sum_k W_lk (c_k - c_l)(v_l - v_k) = v_l (Wc)_l - (W cv)_l - c_l v_l (W1)_l + c_l (Wv)_l
    rhs = torch.stack((c, c * v, mf, v), dim=-1)  # [B, N, 4]
    h = torch.empty_like(s)
    step = chunk_rows(b, n, s.device, per_row=2 * b * n)
    for a in range(0, n, step):
        e = min(n, a + step)
        p = _pair_rows(s, a, e, inv_t)
        w = p * (1 - p) * (1 - 2 * p)  # sigmoid''(d_lk), odd
        wc, wcv, w1, wv = torch.bmm(w, rhs).unbind(-1)
        cl, vl = c[:, a:e], v[:, a:e]
        h[:, a:e] = (vl * wc - wcv - cl * vl * w1 + cl * wv) * (inv_t * inv_t)
    return h * mf


# ---------------------------------------------------------------- the ops
def _like_scores(s, *args):
    return torch.empty_like(s)


@custom_op_rows("approx_ranks", _like_scores)
def approx_ranks(
    s: torch.Tensor, m: Optional[torch.Tensor], temperature: float, native: bool
) -> torch.Tensor:
    """Approximate ranks `[B, N]`, 0 at padded positions."""
    return _native_ranks(s, m, temperature)


@approx_ranks.register_kernel("cpu")
def _(s, m, temperature, native):
    if native:
        return _native_ranks(s, m, temperature)
    return torch.from_numpy(_core.approx_ranks(np_in(s), np_in(m), temperature))


@custom_op_rows("approx_ranks_backward", _like_scores)
def approx_ranks_backward(
    s: torch.Tensor, m: Optional[torch.Tensor], temperature: float, grad_ranks: torch.Tensor, native: bool
) -> torch.Tensor:
    """`J^T grad_ranks` `[B, N]` (0 at padded positions)."""
    return _native_vjp(s, m, temperature, grad_ranks)


@approx_ranks_backward.register_kernel("cpu")
def _(s, m, temperature, grad_ranks, native):
    if native:
        return _native_vjp(s, m, temperature, grad_ranks)
    g = grad_ranks.to(s.dtype)
    return torch.from_numpy(_core.approx_ranks_backward(np_in(s), np_in(m), temperature, np_in(g)))


@custom_op_rows("approx_ranks_double_backward", _like_scores)
def approx_ranks_double_backward(
    s: torch.Tensor, m: Optional[torch.Tensor], temperature: float, grad_ranks: torch.Tensor, v: torch.Tensor
) -> torch.Tensor:
    """d<v, J^T grad_ranks>/ds `[B, N]`: torch-native on every device (O(N^2) time, chunked)."""
    return _native_vjp_grad(s, m, temperature, grad_ranks, v)


def _loss_fake(s, y, m, kind, temperature, scale_gains, discount, need_grad):
    b = s.shape[0]
    grad = torch.empty_like(s) if need_grad else s.new_empty(0)
    return s.new_empty(b), s.new_empty(b, dtype=torch.bool), grad


@custom_op_rows("approx_loss", _loss_fake, device_types="cpu")
def approx_loss(
    s: torch.Tensor,
    y: torch.Tensor,
    m: Optional[torch.Tensor],
    kind: str,
    temperature: float,
    scale_gains: bool,
    discount: str,
    need_grad: bool,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rust: per-list losses `[B]`, whether each counts `[B]` bool, and with `need_grad`
    d losses / d scores `[B, N]` (else an empty tensor)."""
    losses, valid, grad = _core.approx_loss(
        kind, np_in(s), np_in(y.to(s.dtype)), np_in(m), temperature, need_grad, scale_gains, discount
    )
    return torch.from_numpy(losses), torch.from_numpy(valid), t_out(grad, s)
