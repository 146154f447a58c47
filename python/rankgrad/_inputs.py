"""Checks and conversions shared by every public function (SPEC section 2): each rule once.

- padded batches: `lists()` (shapes, dtypes, layouts, devices, sparse/quantized tensors refused)
  and `check_finite()`; ragged GBDT inputs: `flat()`, `group_sizes()`, `ragged()`; lists by query
  id: `query_ids()`;
- options: `check_reduction`, `check_backend`, `check_method`, `check_count` (k, truncation
  levels), `check_scale` (temperature and sigma: one range per dtype on every backend and in the
  kernels), `check_nonnegative`;
- the gain cap (`check_gain_range`), the numpy layout rule (`native_array`), the reductions
  (`reduce`), SPEC 13's weights (`weights_of`, `check_weights`) and the backend rule (`use_rust`).

Shape and dtype checks always run; value checks (NaN/inf) run where `validate` is true.
Each error names the argument, and the list where one is at fault.

This module never imports torch: numpy-only callers (the GBDT objectives, the metrics on
numpy) must work without it. A tensor is recognised only if torch is already loaded (a
caller holding a tensor has loaded it), and torch is imported lazily in the tensor branches.
"""

from __future__ import annotations

import math
import numbers
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional, Union

import numpy as np

from . import _core

if TYPE_CHECKING:
    import torch

    Array = Union[torch.Tensor, np.ndarray]
else:
    Array = Any

# What a numpy-in loss returns: a per-list array for reduction="none", a numpy scalar otherwise.
NumpyLoss = Union[np.ndarray, np.generic]

REDUCTIONS = ("mean", "sum", "none")
BACKENDS = ("auto", "rust", "torch")
METHODS = ("auto", "fast", "exact")

# Largest target for `2^y - 1` gains (the Rust kernels reject larger real targets).
GAIN_CAP: float = float(_core.GAIN_CAP)


def is_tensor(x: Any) -> bool:
    """True for a torch.Tensor, without importing torch."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


# Largest count a torch op's int64 argument holds; a larger `k` means the whole list anyway.
INT64_MAX = 2**63 - 1


def check_count(name: str, value: Any, allow_none: bool = True) -> Optional[int]:
    """`k` / `truncation_level`: None (where allowed) or an integer >= 1, the `_core` rule on
    every backend: a count larger than the list means the whole list (``10**30`` is valid);
    TypeError for non-integers and bools, ValueError below 1."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        want = "an integer >= 1 or None" if allow_none else "an integer >= 1"
        raise TypeError(f"{name} must be {want}, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value}")
    return int(value)


def op_count(k: Optional[int]) -> Optional[int]:
    """`k` for a torch op's int64 argument: a count beyond any list length is None (the
    whole list, what the kernels do with it)."""
    return None if k is None or k > INT64_MAX else k


def check_reduction(reduction: str) -> None:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")


def check_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")


def check_method(method: str) -> str:
    """The summation method of the approximate-rank family (SPEC section 3)."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    return method


def _number(name: str, value: Any) -> float:
    if isinstance(value, (str, bytes, bytearray)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}") from None


def check_real(name: str, value: Any) -> float:
    """A finite float, or a ValueError naming `name` (a TypeError for a non-number)."""
    v = _number(name, value)
    if not abs(v) < math.inf:
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return v


def check_positive(name: str, value: Any) -> float:
    """A positive finite float, or a ValueError naming `name` (a TypeError for a non-number)."""
    v = _number(name, value)
    if not (v > 0.0 and v < math.inf):  # (not math.isfinite: v may be a symbolic float)
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return v


def check_nonnegative(name: str, value: Any) -> float:
    """A finite float >= 0, or a ValueError naming `name` (a TypeError for a non-number)."""
    v = _number(name, value)
    if not (v >= 0.0 and v < math.inf):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return v


def scale_range(dtype: Any) -> tuple[float, float]:
    """The `[low, high]` a temperature or sigma may take when the kernels compute in `dtype`:
    the value, its reciprocal and its square stay finite and normal there (so `x / T`,
    `sigma * x` and `sigma^2` never turn a finite input into inf or NaN by themselves)."""
    name = str(dtype).rsplit(".", 1)[-1]
    fi = np.finfo(np.float64 if name == "float64" else np.float32)
    return float(np.sqrt(fi.tiny)), float(np.sqrt(fi.max))


def check_scale(name: str, value: Any, dtype: Any = "float64") -> float:
    """A temperature or sigma: `check_positive`, and within `scale_range(dtype)` (float16 and
    bfloat16 compute in float32). The one rule for these arguments, on every backend (and the
    kernels' own), so the twins reject the same values; module constructors check the widest
    range (float64) and each call its dtype's."""
    v = check_positive(name, value)
    lo, hi = scale_range(dtype)
    if not lo <= v <= hi:
        dt = "float64" if str(dtype).endswith("float64") else "float32"
        raise ValueError(f"{name}={value!r} is out of range for {dt}: it must lie in [{lo:.3g}, {hi:.3g}]")
    return v


def native_array(x: np.ndarray) -> np.ndarray:
    """The one conversion rule for numpy inputs, on every backend: a C-contiguous array in
    native byte order; float wider than float64 (longdouble) becomes float64."""
    if x.dtype.kind == "f" and x.dtype.itemsize > 8:
        x = x.astype(np.float64)
    elif not x.dtype.isnative:
        x = x.astype(x.dtype.newbyteorder("="))
    return np.ascontiguousarray(x) if x.ndim else x  # (ascontiguousarray makes a 0-d array 1-D)


@dataclass
class Lists:
    """A validated padded batch, always 2-D, in the dtype the kernels compute in."""

    scores: Array  # [B, N], float32 or float64 (differentiable when torch)
    targets: Optional[Array]  # [B, N], same dtype as scores, never requires grad
    mask: Optional[Array]  # [B, N] bool, or None
    squeeze: bool  # the input was 1-D: drop the list dimension from per-list outputs
    dtype: Any  # the input dtype, for the results (float64 for a numpy longdouble)

    @property
    def is_torch(self) -> bool:
        return is_tensor(self.scores)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.scores.shape)

    def numpy(self) -> tuple[np.ndarray, Optional[np.ndarray], Optional[np.ndarray]]:
        """(scores, targets, mask) as numpy arrays the Rust core borrows without copying."""

        def conv(x: Any) -> Any:
            if x is None:
                return None
            if is_tensor(x):
                x = x.detach().contiguous().numpy()
            return np.ascontiguousarray(x)

        return conv(self.scores), conv(self.targets), conv(self.mask)

    def check_finite(self) -> None:
        """ValueError naming the argument and the first list with NaN/inf on a real item."""
        check_finite(self.scores, self.mask, "scores")
        if self.targets is not None:
            check_finite(self.targets, self.mask, "targets")

    def out(self, x: Any) -> Any:
        """A per-list result `[B]` in the input dtype (a scalar for a 1-D input)."""
        x = _cast(x, self.dtype)
        return x[0] if self.squeeze else x


def _kind(x: Any, name: str) -> str:
    if is_tensor(x):
        if x.layout != sys.modules["torch"].strided or x.is_quantized:
            what = "quantized" if x.is_quantized else str(x.layout).rsplit(".", 1)[-1]
            raise TypeError(
                f"{name} must be a dense tensor, got a {what} tensor (convert it with .to_dense() / .dequantize())"
            )
        return "torch"
    if isinstance(x, np.ndarray):
        return "numpy"
    raise TypeError(f"{name} must be a torch.Tensor or a numpy.ndarray, got {type(x).__name__}")


def check_finite(x: Array, mask: Optional[Array], name: str) -> None:
    """ValueError naming `name` and the first list with NaN/inf on a real item."""
    if is_tensor(x):
        import torch

        bad = ~torch.isfinite(x.detach())
        if mask is not None:
            bad &= mask
        rows = bad.any(dim=-1)
        if bool(rows.any()):
            raise ValueError(f"{name} contains NaN or inf (list {int(rows.nonzero()[0, 0])})")
    else:
        bad = ~np.isfinite(x)
        if mask is not None:
            bad &= mask
        rows = bad.any(axis=-1)
        if rows.any():
            raise ValueError(f"{name} contains NaN or inf (list {int(np.flatnonzero(rows)[0])})")


def check_gain_range(targets: Array, mask: Optional[Array], name: str = "targets") -> None:
    """ValueError naming `name` and the list of the first real target above `GAIN_CAP`
    (`2^y - 1` gains), the rule of the Rust kernels."""
    big = targets > GAIN_CAP
    if mask is not None:
        big = big & mask
    rows = big.any(-1)
    if bool(rows.any()):
        first = int(rows.nonzero()[0, 0]) if is_tensor(rows) else int(np.flatnonzero(rows)[0])
        raise ValueError(
            f"{name} has a value in list {first} that is too large for 2^y - 1 gains "
            f"(scale_gains=True): at most {GAIN_CAP:g}"
        )


def lists(
    scores: Any,
    targets: Any = None,
    mask: Any = None,
    *,
    targets_required: bool = True,
    validate: bool = True,
    compute_dtype: bool = True,
) -> Lists:
    """Validates a padded batch: `scores [B, N]` or `[N]`, `targets` and `mask` alike.

    numpy inputs follow `native_array` (C order, native byte order, longdouble -> float64),
    so both backends see the same arrays."""
    kind = _kind(scores, "scores")
    if scores.ndim not in (1, 2):
        raise ValueError(f"scores must be 1-D [N] or 2-D [B, N], got shape {tuple(scores.shape)}")
    squeeze = scores.ndim == 1
    shape = tuple(scores.shape)
    if kind == "torch":
        import torch

        if not torch.is_floating_point(scores):
            raise TypeError(f"scores must be a floating-point tensor, got {scores.dtype}")
        dtype = scores.dtype
        work: Any = torch.float64 if scores.dtype == torch.float64 else torch.float32
        s = scores.to(work) if compute_dtype else scores
    else:
        if not np.issubdtype(scores.dtype, np.floating):
            raise TypeError(f"scores must be a floating-point array, got {scores.dtype}")
        scores = native_array(scores)
        dtype = scores.dtype
        work = np.float64 if scores.dtype == np.float64 else np.float32
        s = np.ascontiguousarray(scores.astype(work, copy=False)) if compute_dtype else scores
    if squeeze:
        s = s[None, :]

    def same(x: Any, name: str) -> Any:
        if kind == "torch" and isinstance(x, np.ndarray):
            import torch

            x = torch.from_numpy(native_array(x)).to(scores.device)
        _kind(x, name)
        if kind == "numpy" and is_tensor(x):
            raise TypeError(f"{name} must be a numpy.ndarray like scores, got a torch.Tensor")
        if tuple(x.shape) != shape:
            raise ValueError(f"{name} has shape {tuple(x.shape)}, expected {shape} like scores")
        if kind == "torch" and x.device != scores.device:
            raise ValueError(f"{name} is on {x.device} but scores is on {scores.device}")
        if kind == "numpy":
            x = native_array(x)
        return x[None, :] if squeeze else x

    y = None
    if targets is None:
        if targets_required:
            raise TypeError("targets is required")
    else:
        y = same(targets, "targets")
        if kind == "torch":
            if y.is_complex():
                raise TypeError(f"targets must be real numbers, got {y.dtype}")
            y = y.detach().to(s.dtype)
        else:
            if not (np.issubdtype(y.dtype, np.number) or y.dtype == np.bool_) or np.iscomplexobj(y):
                raise TypeError(f"targets must be real numbers, got {y.dtype}")
            y = y.astype(s.dtype, copy=False)
    m = None
    if mask is not None:
        m = same(mask, "mask")
        if (kind == "torch" and str(m.dtype) != "torch.bool") or (kind == "numpy" and m.dtype != np.bool_):
            raise TypeError(f"mask must be boolean (True = real item), got {m.dtype}")
    out = Lists(s, y, m, squeeze, dtype)
    if validate:
        out.check_finite()
    return out


def reduce(
    losses: Array,
    valid: Array,
    reduction: str,
    x: Optional[Lists] = None,
    list_weights: Optional[Array] = None,
) -> Array:
    """`mean` over the lists that count (0 if none does), `sum`, or `none` (per list `[B]`).

    With `list_weights` (`[B]`, SPEC 13) each list's loss is multiplied by its weight and `mean`
    is the weighted mean over the lists that count (`sum_b w_b loss_b / sum_{b counts} w_b`, 0 when
    that is 0). With `x`, the result is in the input dtype and a 1-D input gives a scalar for `none`.
    """
    if x is not None:
        out = reduce(losses, valid, reduction, list_weights=list_weights)
        return x.out(out) if reduction == "none" else _cast(out, x.dtype)
    if list_weights is not None:
        if is_tensor(losses):
            # where(): a list weighing 0 passes back exactly 0 and nothing else; `0 * grad` would
            # keep a NaN that a loss's double backward may hold there (logcumsumexp's backward
            # takes log |grad|, infinite at 0, so its derivative in the incoming gradient is 0 * inf)
            losses = torch_where(list_weights > 0, losses * list_weights, losses.new_zeros(()))
        else:
            losses = losses * list_weights
    if reduction == "none":
        return losses
    if reduction == "sum":
        return losses.sum()
    if is_tensor(losses):
        count = valid.to(losses.dtype) if list_weights is None else (valid * list_weights).to(losses.dtype)
        total = count.sum()
        total = total.clamp(min=1) if list_weights is None else total.where(total > 0, 1)
        mean = losses.sum() / total
        # where the per-list losses fit but their sum overflows, the mean of the scaled losses does
        return mean.where(mean.isfinite() | ~losses.isfinite().all(), (losses / total).sum())
    if list_weights is None:
        total = float(max(int(valid.sum()), 1))
    else:
        total = float((valid * list_weights).sum())
        total = total if total > 0 else 1.0
    mean = losses.sum() / total
    if not np.isfinite(mean) and np.isfinite(losses).all():
        mean = (losses / total).sum()
    return mean


def check_weights(w: Array, mask: Optional[Array], name: str = "weights") -> None:
    """ValueError naming `name` and the first list whose real items hold a weight that is NaN,
    infinite or negative (SPEC 13; padded items' weights are ignored, whatever they hold)."""
    bad = ~(w >= 0) | ~(w < math.inf)
    if mask is not None:
        bad = bad & mask
    rows = bad.any(-1)
    if bool(rows.any()):
        first = int(rows.nonzero()[0, 0]) if is_tensor(rows) else int(np.flatnonzero(rows)[0])
        raise ValueError(f"{name} must be finite and >= 0 (list {first})")


def weights_of(
    weights: Any, x: Lists, validate: bool = True, *, check_items: bool = True
) -> tuple[Optional[Array], Optional[Array]]:
    """SPEC 13's `weights` for the batch `x`: `(per-item [B, N] or None, per-list [B] or None)` in
    the compute dtype. `[B, N]` (`[N]` for a 1-D input) weighs items, `[B]` (a 0-d array for a 1-D
    input) whole lists. Weights must be finite and >= 0 on real items (padded items' weights are
    ignored): a ValueError naming `weights`, checked when `validate` (always for numpy), per-item
    weights only with `check_items` (the loss ops check them themselves: the Rust kernels always,
    the torch twins behind `validate`). Shapes, types and devices are always checked: TypeError
    for a non-array, a tensor for numpy scores or complex values; ValueError for another device
    or shape."""
    if weights is None:
        return None, None
    kind = "torch" if x.is_torch else "numpy"
    if kind == "torch" and isinstance(weights, np.ndarray):
        import torch

        weights = torch.from_numpy(native_array(weights)).to(x.scores.device)
    if _kind(weights, "weights") != kind:
        raise TypeError(f"weights must be a {'torch.Tensor' if x.is_torch else 'numpy.ndarray'} like scores")
    if kind == "numpy":
        weights = native_array(weights)
        if not (np.issubdtype(weights.dtype, np.number) or weights.dtype == np.bool_) or np.iscomplexobj(
            weights
        ):
            raise TypeError(f"weights must be real numbers, got {weights.dtype}")
        w = weights.astype(x.scores.dtype, copy=False)
    else:
        if weights.is_complex():
            raise TypeError(f"weights must be real numbers, got {weights.dtype}")
        if weights.device != x.scores.device:
            raise ValueError(f"weights is on {weights.device} but scores is on {x.scores.device}")
        w = weights.detach().to(x.scores.dtype)
    b, n = x.shape
    item_shape, list_shape = ((n,), ()) if x.squeeze else ((b, n), (b,))
    shape = tuple(w.shape)
    check = validate or kind == "numpy"
    if shape == item_shape:
        w = w[None] if x.squeeze else w
        if check and check_items:
            check_weights(w, x.mask)
        return w, None
    if shape == list_shape:
        w = w.reshape(1) if x.squeeze else w
        if check:
            check_weights(w[:, None], None)
        return None, w
    raise ValueError(
        f"weights has shape {shape}: expected {item_shape} (one per item) or {list_shape} (one per list)"
    )


def torch_where(cond: Any, a: Any, b: Any) -> Any:
    """`torch.where` (torch is loaded: a tensor is at hand)."""
    return sys.modules["torch"].where(cond, a, b)


def _cast(x: Any, dtype: Any) -> Any:
    return x.to(dtype) if is_tensor(x) else np.asarray(x).astype(dtype)[()]


def use_rust(x: Lists, backend: str) -> bool:
    """Rust kernels for numpy and CPU tensors, the torch-native path for other devices (and
    for meta tensors, whose fake kernels give the shapes)."""
    check_backend(backend)
    if backend == "torch" or (x.is_torch and x.scores.device.type == "meta"):  # meta: shapes only
        return False
    on_cpu = not x.is_torch or x.scores.device.type == "cpu"
    if backend == "rust" and not on_cpu:
        raise ValueError(f"backend='rust' needs CPU tensors, got scores on {x.scores.device}")
    return on_cpu


# ---------------------------------------------------------------- numpy <-> torch
def as_tensors(x: Lists) -> Lists:
    """A numpy batch as CPU tensors sharing its memory: the one conversion for
    `backend="torch"` on numpy input (`lists` has already made the arrays native and C-ordered)."""
    import torch

    conv = [None if a is None else torch.from_numpy(a) for a in (x.scores, x.targets, x.mask)]
    return Lists(conv[0], conv[1], conv[2], x.squeeze, x.dtype)


def to_numpy(x: Any) -> Any:
    """A result of the torch path back to numpy (a 0-d result as a numpy scalar)."""
    return x.detach().cpu().numpy()[()] if is_tensor(x) else x


# ---------------------------------------------------------------- ragged (GBDT) inputs
def flat(x: Any, name: str, n: Optional[int] = None, *, keep_float: bool = False) -> np.ndarray:
    """One real value per row as a contiguous 1-D numpy array: tensors are moved to the CPU,
    `[n, 1]` becomes `[n]`; float64 (float32 kept with `keep_float`); TypeError for non-real
    values, ValueError for another shape or (with `n`) another length, naming `name`."""
    if is_tensor(x):
        x = x.detach().cpu().numpy()
    a = np.asarray(x)
    if a.dtype.kind not in "fiub":
        raise TypeError(f"{name} must hold real numbers, got dtype {a.dtype}")
    if a.ndim == 2 and a.shape[1] == 1:
        a = a[:, 0]
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one value per row), got shape {a.shape}")
    if n is not None and a.shape[0] != n:
        raise ValueError(f"{name} has {a.shape[0]} values, expected {n} like preds")
    keep = keep_float and a.dtype in (np.float32, np.float64)
    return np.ascontiguousarray(native_array(a) if keep else a, dtype=None if keep else np.float64)


def group_sizes(group: Any, n: int, rows: str = "preds") -> np.ndarray:
    """List sizes `[G]` as int64: integers >= 0 summing to `n`, the length of the argument `rows`
    (a size-0 group is an empty list, the rule of `src/ragged.rs`); a ValueError naming `group`
    otherwise."""
    if group is None:
        raise ValueError("group: ranking needs the query groups (list sizes), got None")
    g = np.asarray(group.detach().cpu().numpy() if is_tensor(group) else group)
    if g.ndim != 1:
        raise ValueError(f"group must be 1-D (list sizes), got shape {g.shape}")
    if g.size and g.dtype.kind not in "iu":
        if g.dtype.kind != "f" or not (np.isfinite(g).all() and (g == np.round(g)).all()):
            raise ValueError(f"group must hold integer list sizes, got {g.dtype}")
    if g.dtype.kind == "u" and g.size and g.max() > np.iinfo(np.int64).max:
        raise ValueError(
            f"group: the size of group {int(np.argmax(g > np.iinfo(np.int64).max))} is too large"
        )
    g = np.ascontiguousarray(g, dtype=np.int64)
    if g.size and g.min() < 0:
        raise ValueError(f"group: the size of group {int(np.argmax(g < 0))} is negative")
    total = int(g.sum(dtype=np.float64)) if g.size else 0
    if total != n:
        raise ValueError(f"group: sizes sum to {total}, but {rows} has {n} rows")
    return g


def query_ids(qid: Any, n: Optional[int] = None, rows: str = "values") -> np.ndarray:
    """Query ids `[n]` (one per row; a row's list is the rows sharing its id) as a 1-D numpy array
    of a dtype `_core.pad_index_qid` takes (integers, float32, float64), equal ids staying equal
    and distinct ones distinct: tensors are moved to the CPU; bool becomes uint8, float16 and
    bfloat16 float32, datetime64 / timedelta64 int64; strings, bytes, complex numbers and other
    sortable dtypes their rank in `np.unique`; objects (any hashable) a code per distinct value
    (Python equality, a dict). ValueError naming `qid` for NaN / NaT ids (equal to nothing), a
    shape other than 1-D or (with `n`) a length other than `n`, the rows of argument `rows`;
    TypeError naming `qid` for ids numpy cannot compare or Python cannot hash."""
    if qid is None:
        raise ValueError("qid: got None")
    if is_tensor(qid):
        q = qid.detach()
        if q.dtype in (sys.modules["torch"].bfloat16, sys.modules["torch"].float16):
            q = q.float()
        q = q.cpu().numpy()
    else:
        q = np.asarray(qid)
    if q.ndim != 1:
        raise ValueError(f"qid must be 1-D (one id per row), got shape {q.shape}")
    if n is not None and q.shape[0] != n:
        raise ValueError(f"qid has {q.shape[0]} ids, but {rows} has {n} rows")
    kind = q.dtype.kind
    if kind == "b":
        return q.view(np.uint8)
    if kind in "fc" and np.isnan(q).any():
        raise ValueError(f"qid: row {int(np.flatnonzero(np.isnan(q))[0])} is NaN (ids must equal themselves)")
    if kind in "iu" or (kind == "f" and q.dtype.itemsize in (4, 8)):
        return q
    if kind == "f" and q.dtype.itemsize < 4:
        return q.astype(np.float32)
    if kind in "mM":
        if np.isnat(q).any():
            raise ValueError(
                f"qid: row {int(np.flatnonzero(np.isnat(q))[0])} is NaT (ids must equal themselves)"
            )
        return native_array(q).view(np.int64)
    if kind == "O":
        codes: dict[Any, int] = {}
        try:
            return np.fromiter((codes.setdefault(k, len(codes)) for k in q), dtype=np.int64, count=q.shape[0])
        except TypeError as e:
            raise TypeError(f"qid must hold hashable ids: {e}") from None
    try:
        return np.unique(q, return_inverse=True)[1].reshape(-1)
    except TypeError:
        raise TypeError(f"qid must hold ids numpy can compare, got dtype {q.dtype}") from None


def ragged(
    preds: Any, labels: Any, group: Any, weights: Any = None, *, keep_float: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray, Optional[np.ndarray]]:
    """`(preds, labels, group, weights)` of the ragged layout, checked: `flat` values (`keep_float`:
    float32 preds and labels stay float32), `group_sizes`, and float64 per-row weights or None
    (an empty array is None, as LightGBM and XGBoost report no weights)."""
    p = flat(preds, "preds", keep_float=keep_float)
    y = flat(labels, "labels", p.shape[0], keep_float=keep_float)
    g = group_sizes(group, p.shape[0])
    w = None
    if weights is not None and np.size(weights) > 0:
        w = flat(weights, "weights", p.shape[0])
    return p, y, g, w
