"""Ragged <-> padded (SPEC section 15): `pad` and `unpad`.

A ragged batch is a flat array of rows, each row in one list; a padded batch is `[B, N]` (one
list per row, `N` the longest list) with a bool `mask` (True = real item), the layout every
loss and metric of rankgrad takes (SPEC section 2). The lists are given by their sizes (`group`,
LightGBM's convention: each list's rows contiguous) or by a query id per row (`qid`, contiguous
or not: lists in order of first appearance, rows in their order within a list).

The index (which padded slot each row goes to) is computed by the Rust core on the CPU in O(n)
(`_core.pad_index_groups`, `_core.pad_index_qid`: a hash map over the ids); the data move is
one numpy / torch indexing, on the values' device, in the values' dtype (any dtype). Trailing
dimensions are carried: values `[n, d]` pad to `[B, N, d]` (the mask stays `[B, N]`). On
tensors both functions are differentiable (a scatter and a gather), so model outputs can be
padded on their way to a loss.

This module imports torch only when handed a tensor.
"""

from __future__ import annotations

import math
import numbers
from typing import TYPE_CHECKING, Any, Tuple, TypeVar, Union, overload

import numpy as np
import numpy.typing as npt

from . import _core
from ._inputs import _kind, group_sizes, is_tensor, native_array, query_ids

if TYPE_CHECKING:
    import torch

__all__ = ["pad", "unpad"]

_S = TypeVar("_S", bound=np.generic)
Fill = Union[complex, str, bytes, np.generic]  # complex takes int, float and bool too


def _fill_value(fill: Any, dtype: Any) -> Any:
    """`fill` as a value of `dtype` (numpy or torch), or a ValueError naming `fill` when it does
    not fit: a fraction, NaN or a number out of range for integers, a number other than 0/1 for
    bool, a finite number beyond the largest of a float dtype, an imaginary part for a real
    dtype; a TypeError for a non-number. Non-numeric numpy dtypes (str, bytes, datetime,
    object) take what numpy converts, `0` meaning the dtype's zero (`np.zeros`)."""
    if (is_tensor(fill) or isinstance(fill, (np.ndarray, np.generic))) and fill.ndim == 0:
        fill = fill.item()
    torch_dtype = not isinstance(dtype, np.dtype)
    if torch_dtype:
        import torch

        kinds = {"b": dtype == torch.bool, "c": dtype.is_complex, "f": dtype.is_floating_point}
        kind = next((k for k, yes in kinds.items() if yes), "i")
        info: Any = torch.iinfo if kind == "i" else torch.finfo
    else:
        kind = dtype.kind if dtype.kind in "biufc" else "other"
        info = np.iinfo if kind in "iu" else np.finfo
    if kind == "other":
        if isinstance(fill, int) and not isinstance(fill, bool) and fill == 0:
            return np.zeros((), dtype)[()]
        try:
            return np.array(fill, dtype=dtype)[()]
        except (TypeError, ValueError, OverflowError) as e:
            raise ValueError(f"fill={fill!r} cannot be a value of dtype {dtype}: {e}") from None
    if isinstance(fill, (bool, np.bool_)):
        fill = bool(fill)
    if not isinstance(fill, numbers.Number):
        raise TypeError(f"fill must be a number, got {type(fill).__name__}")

    def misfit(why: str) -> ValueError:
        return ValueError(f"fill={fill!r} does not fit dtype {dtype}: {why}")

    value: Any = fill
    if kind != "c" and not isinstance(value, numbers.Real):
        if complex(value).imag != 0:
            raise misfit("it has an imaginary part")
        value = complex(value).real
    if kind == "b":
        if value not in (0, 1):
            raise misfit("a bool fill is 0, 1, False or True")
        return bool(value)
    if kind in "iu":
        if not isinstance(value, numbers.Integral):
            if not (math.isfinite(value) and float(value).is_integer()):
                raise misfit("not an integer")
        value = int(value)
        lo, hi = int(info(dtype).min), int(info(dtype).max)
        if not lo <= value <= hi:
            raise misfit(f"outside [{lo}, {hi}]")
        return value if torch_dtype else dtype.type(value)
    try:
        value = complex(value) if kind == "c" else float(value)
    except OverflowError:
        raise misfit("too large") from None
    top = float(info(dtype).max)
    if any(math.isfinite(x) and abs(x) > top for x in (value.real, value.imag)):
        raise misfit(f"beyond its largest finite value ({top:g})")
    return value if torch_dtype else dtype.type(value)


def _bits(dtype: Any) -> Any:
    """The signed integer torch dtype of the same size, for a dtype whose values torch's
    indexing and scatter kernels lack on some versions (uint16/32/64, 8-bit floats; torch 2.7
    has no CPU `index` for them): those move as their bits."""
    import torch

    if dtype in (torch.uint16, torch.uint32, torch.uint64) or (
        dtype.is_floating_point and dtype.itemsize == 1
    ):
        return {1: torch.int8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[dtype.itemsize]
    return None


def _index(n: int, group: Any, qid: Any) -> Tuple[np.ndarray, np.ndarray]:
    """`(index [n], sizes [B])`: each row's flat slot in the padded `[B, N]` batch."""
    if (group is None) == (qid is None):
        both = "both" if group is not None else "neither"
        raise TypeError(f"pad needs exactly one of group (list sizes) and qid (query ids), got {both}")
    if group is not None:
        return _core.pad_index_groups(group_sizes(group, n, rows="values"), n)
    return _core.pad_index_qid(query_ids(qid, n, rows="values"), True)


@overload
def pad(
    values: torch.Tensor, group: Any = ..., qid: Any = ..., fill: Fill = ...
) -> Tuple[torch.Tensor, torch.Tensor]: ...
@overload
def pad(
    values: npt.NDArray[_S], group: Any = ..., qid: Any = ..., fill: Fill = ...
) -> Tuple[npt.NDArray[_S], npt.NDArray[np.bool_]]: ...
def pad(values: Any, group: Any = None, qid: Any = None, fill: Any = 0) -> Any:
    """Pads a flat (ragged) batch of rows into `[B, N]` lists and their mask.

    Give exactly one of `group` (list sizes: list `g` is the next `group[g]` rows) and `qid` (a
    query id per row: the rows sharing an id form a list, lists in order of first appearance,
    rows in their order within a list, contiguous or not). `B` is the number of lists (a size-0
    group is a row of padding), `N` the longest list (0 when there is none). Row `r` of list `b`
    at position `p` lands in `padded[b, p]`; every other slot holds `fill`.

    Args:
        values: `[n]` or `[n, ...]` (trailing dimensions are carried), a numpy array or a tensor
            of any dtype (bool, integers, float16/bfloat16/float32/float64, complex; numpy
            strings and objects too), kept as is. A tensor stays on its device, and the result
            is differentiable with respect to it.
        group: list sizes `[B]`, integers >= 0 summing to n (list, numpy array or tensor).
        qid: query ids `[n]`: any integer dtype, bool, floats (NaN refused; -0.0 equals 0.0),
            datetime64, strings/bytes, complex or Python objects (by equality), as a list,
            numpy array or tensor.
        fill: the value of the padded slots, cast to the dtype of `values`; a ValueError when it
            does not fit (0.5 or NaN for integers, 2 for bool, 1e6 for float16). For numpy
            strings, bytes, datetimes and objects, numpy converts it (`0`: the dtype's zero).

    Returns:
        `(padded, mask)`: `padded` `[B, N, ...]` in the type, dtype and device of `values`;
        `mask` `[B, N]` bool, True at real items. `unpad` inverts it.

    Example:
        >>> import numpy as np, rankgrad
        >>> padded, mask = rankgrad.pad(np.array([1.0, 2.0, 3.0, 4.0, 5.0]), qid=[7, 3, 7, 7, 3])
        >>> padded
        array([[1., 3., 4.],
               [2., 5., 0.]])
        >>> mask
        array([[ True,  True,  True],
               [ True,  True, False]])
        >>> rankgrad.pad(np.arange(4), group=[1, 0, 3], fill=-1)[0]
        array([[ 0, -1, -1],
               [-1, -1, -1],
               [ 1,  2,  3]])
    """
    kind = _kind(values, "values")
    if values.ndim < 1:
        raise ValueError(f"values must be at least 1-D ([n] or [n, ...]), got shape {tuple(values.shape)}")
    fill = _fill_value(fill, values.dtype)
    n, rest = int(values.shape[0]), tuple(values.shape[1:])
    index, sizes = _index(n, group, qid)
    b = int(sizes.shape[0])
    width = int(sizes.max()) if b else 0
    mask = np.arange(width) < sizes[:, None]
    if kind == "numpy":
        out = np.full((b * width, *rest), fill, dtype=values.dtype)
        out[index] = values
        return out.reshape(b, width, *rest), mask
    import torch

    dev, bits = values.device, _bits(values.dtype)
    src = values if bits is None else values.view(bits)
    if bits is not None:
        fill = torch.tensor(fill, dtype=values.dtype).view(bits).item()
    out = torch.full((b * width, *rest), fill, dtype=src.dtype, device=dev)
    out = out.index_copy(0, torch.from_numpy(index).to(dev), src).reshape(b, width, *rest)
    return (out if bits is None else out.view(values.dtype)), torch.from_numpy(mask).to(dev)


@overload
def unpad(padded: torch.Tensor, mask: Any, qid: Any = ...) -> torch.Tensor: ...
@overload
def unpad(padded: npt.NDArray[_S], mask: Any, qid: Any = ...) -> npt.NDArray[_S]: ...
def unpad(padded: Any, mask: Any, qid: Any = None) -> Any:
    """The rows of a padded batch back in one flat array: the inverse of `pad`.

    Without `qid`, the real items in list order (`padded[mask]`: row-major, so a `pad` by
    `group` comes back exactly). With the `qid` given to `pad`, in the original row order, so
    `unpad(*pad(values, qid=qid), qid=qid)` is `values` for any ids, contiguous or not: the
    `k`-th real item of list `b` is the `k`-th row holding the `b`-th id (in order of first
    appearance). The mask must then have, in each list, as many real items as qid has rows
    with that id.

    Args:
        padded: `[B, N]` or `[B, N, ...]`, a numpy array or a tensor of any dtype.
        mask: `[B, N]` bool, True at real items (a numpy mask is moved to a tensor's device).
        qid: the query ids `[n]` that `pad` was given, or None.

    Returns:
        `[n, ...]` in the type, dtype and device of `padded` (differentiable for tensors).

    Example:
        >>> import numpy as np, rankgrad
        >>> values, qid = np.array([1.0, 2.0, 3.0, 4.0, 5.0]), [7, 3, 7, 7, 3]
        >>> padded, mask = rankgrad.pad(values, qid=qid)
        >>> rankgrad.unpad(padded, mask)
        array([1., 3., 4., 2., 5.])
        >>> rankgrad.unpad(padded, mask, qid=qid)
        array([1., 2., 3., 4., 5.])
    """
    kind = _kind(padded, "padded")
    if padded.ndim < 2:
        raise ValueError(f"padded must be [B, N] or [B, N, ...], got shape {tuple(padded.shape)}")
    if kind == "torch" and isinstance(mask, np.ndarray):
        import torch

        mask = torch.from_numpy(native_array(mask)).to(padded.device)
    if _kind(mask, "mask") != kind:
        raise TypeError(f"mask must be a {type(padded).__name__} like padded, got {type(mask).__name__}")
    if str(mask.dtype) not in ("bool", "torch.bool"):
        raise TypeError(f"mask must be boolean (True = real item), got {mask.dtype}")
    if tuple(mask.shape) != tuple(padded.shape[:2]):
        raise ValueError(
            f"mask has shape {tuple(mask.shape)}, expected {tuple(padded.shape[:2])} like padded"
        )
    if kind == "torch" and mask.device != padded.device:
        raise ValueError(f"mask is on {mask.device} but padded is on {padded.device}")
    bits = _bits(padded.dtype) if kind == "torch" else None
    src = padded if bits is None else padded.view(bits)
    if qid is None:
        return src[mask] if bits is None else src[mask].view(padded.dtype)
    index, sizes = _core.pad_index_qid(query_ids(qid), False)
    counts = np.asarray(mask.sum(1).cpu() if kind == "torch" else mask.sum(1), dtype=np.int64)
    if sizes.shape[0] != counts.shape[0]:
        raise ValueError(
            f"mask has {counts.shape[0]} lists (rows), but qid has {sizes.shape[0]} distinct ids"
        )
    bad = np.flatnonzero(counts != sizes)
    if bad.size:
        b = int(bad[0])
        raise ValueError(
            f"mask has {counts[b]} real items in list {b}, but qid has {sizes[b]} rows with that "
            "list's id (lists in order of first appearance)"
        )
    flat = src[mask]
    if kind == "numpy":
        return flat[index]
    import torch

    flat = flat.index_select(0, torch.from_numpy(index).to(flat.device))
    return flat if bits is None else flat.view(padded.dtype)
