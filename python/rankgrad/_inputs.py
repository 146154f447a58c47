"""Checks and conversions shared by every public function (SPEC section 2).

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


def check_positive(name: str, value: Any) -> float:
    """A positive finite float, or a ValueError naming `name`."""
    try:
        v = float(value)
    except (TypeError, ValueError, OverflowError):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}") from None
    if not (v > 0.0 and v < math.inf):  # (not math.isfinite: v may be a symbolic float)
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return v


def scale_range(dtype: Any) -> tuple[float, float]:
    """The `[low, high]` a temperature or sigma may take when the kernels compute in `dtype`:
    the value, its reciprocal and its square stay finite and normal there (so `x / T`,
    `sigma * x` and `sigma^2` never turn a finite input into inf or NaN by themselves)."""
    name = str(dtype).rsplit(".", 1)[-1]
    fi = np.finfo(np.float64 if name == "float64" else np.float32)
    return float(np.sqrt(fi.tiny)), float(np.sqrt(fi.max))


def check_scale(name: str, value: Any, dtype: Any) -> float:
    """`check_positive`, and within `scale_range(dtype)` (float16/bfloat16 compute in float32);
    the same rule on every backend, so the twins reject the same arguments."""
    v = check_positive(name, value)
    lo, hi = scale_range(dtype)
    if not lo <= v <= hi:
        dt = "float64" if str(dtype).endswith("float64") else "float32"
        raise ValueError(f"{name}={value!r} is out of range for {dt}: it must lie in [{lo:.3g}, {hi:.3g}]")
    return v


def chunk_rows(b: int, n: int, device: Any = None, per_row: Optional[int] = None) -> int:
    """Rows per chunk for a torch-native pair loop: one `[B, chunk, N]` temporary (or
    `per_row` elements a row) stays near a fixed element budget, larger on CUDA."""
    budget = (1 << 26) if getattr(device, "type", "cpu") == "cuda" else (1 << 22)
    return max(1, min(max(n, 1), budget // max(1, per_row if per_row is not None else b * n)))


def native_array(x: np.ndarray) -> np.ndarray:
    """The one conversion rule for numpy inputs, on every backend: a C-contiguous array in
    native byte order; float wider than float64 (longdouble) becomes float64."""
    if x.dtype.kind == "f" and x.dtype.itemsize > 8:
        x = x.astype(np.float64)
    elif not x.dtype.isnative:
        x = x.astype(x.dtype.newbyteorder("="))
    return np.ascontiguousarray(x)


def compute_dtype_of(dtype: Any) -> Any:
    """The dtype the kernels compute in: float64 stays, everything else is float32."""
    if is_tensor_dtype(dtype):
        import torch

        return torch.float64 if dtype == torch.float64 else torch.float32
    return np.float64 if np.dtype(dtype) == np.float64 else np.float32


def is_tensor_dtype(dtype: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(dtype, torch.dtype)


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
        _check_finite(self.scores, self.mask, "scores")
        if self.targets is not None:
            _check_finite(self.targets, self.mask, "targets")

    def out(self, x: Any) -> Any:
        """A per-list result `[B]` in the input dtype (a scalar for a 1-D input)."""
        x = _cast(x, self.dtype)
        return x[0] if self.squeeze else x


def _kind(x: Any, name: str) -> str:
    if is_tensor(x):
        return "torch"
    if isinstance(x, np.ndarray):
        return "numpy"
    raise TypeError(f"{name} must be a torch.Tensor or a numpy.ndarray, got {type(x).__name__}")


def _check_finite(x: Array, mask: Optional[Array], name: str) -> None:
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


def reduce(losses: Array, valid: Array, reduction: str, x: Optional[Lists] = None) -> Array:
    """`mean` over the lists that count (0 if none does), `sum`, or `none` (per list `[B]`).

    With `x`, the result is in the input dtype and a 1-D input gives a scalar for `none`.
    """
    if x is not None:
        out = reduce(losses, valid, reduction)
        return x.out(out) if reduction == "none" else _cast(out, x.dtype)
    if reduction == "none":
        return losses
    if reduction == "sum":
        return losses.sum()
    if is_tensor(losses):
        return losses.sum() / valid.sum().clamp(min=1).to(losses.dtype)
    return losses.sum() / max(int(valid.sum()), 1)


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
