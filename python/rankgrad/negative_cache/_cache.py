"""The cache: its layout (specs), its slots, and the update rule (refresh, insert, age)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

import torch
from torch import Tensor

from .._inputs import _kind

__all__ = ["CacheManager", "NegativeCache", "Spec", "matching_slots"]

Spec = Tuple[Tuple[int, ...], torch.dtype]

_SPEC_DTYPES = (
    torch.bool,
    torch.uint8,
    torch.int8,
    torch.int16,
    torch.int32,
    torch.int64,
    torch.float16,
    torch.bfloat16,
    torch.float32,
    torch.float64,
)


@dataclass
class NegativeCache:
    """A cache of `cache_size` slots.

    data:   {name: Tensor[cache_size, *shape]}
    age:    Tensor[cache_size] int64, updates since the slot was written (or refreshed, with LRU)
    filled: Tensor[cache_size] bool, False for a slot never written (never sampled)
    """

    data: Dict[str, Tensor]
    age: Tensor
    filled: Tensor

    @property
    def cache_size(self) -> int:
        return int(self.age.shape[0])

    @property
    def device(self) -> torch.device:
        return self.age.device

    def clone(self) -> NegativeCache:
        return NegativeCache(
            {k: v.clone() for k, v in self.data.items()}, self.age.clone(), self.filled.clone()
        )


# ---------------------------------------------------------------------------------------
# Checks


def _check_int(value: Any, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def _check_specs(specs: Any) -> Dict[str, Spec]:
    if not isinstance(specs, Mapping) or not specs:
        raise TypeError("specs must be a non-empty dict {name: (shape, dtype)}")
    out: Dict[str, Spec] = {}
    for name, spec in specs.items():
        if not isinstance(name, str):
            raise TypeError(f"specs keys must be str, got {name!r}")
        try:
            shape, dtype = spec
        except (TypeError, ValueError):
            raise TypeError(f"specs[{name!r}] must be a (shape, dtype) pair, got {spec!r}") from None
        if isinstance(shape, int) and not isinstance(shape, bool):
            shape = (shape,)
        # Python ints only: int(2.5), int(True) or int(tensor) would change the shape silently
        if not isinstance(shape, (tuple, list)) or not all(
            isinstance(s, int) and not isinstance(s, bool) for s in shape
        ):
            raise TypeError(
                f"specs[{name!r}] shape must be a tuple of non-negative Python ints, got {shape!r}"
            )
        shape = tuple(int(s) for s in shape)  # int subclasses (IntEnum) become plain ints
        if any(s < 0 for s in shape):
            raise ValueError(f"specs[{name!r}] shape must be a tuple of non-negative ints, got {shape}")
        if not isinstance(dtype, torch.dtype):
            raise TypeError(f"specs[{name!r}] dtype must be a torch.dtype, got {dtype!r}")
        if dtype not in _SPEC_DTYPES:
            raise TypeError(f"specs[{name!r}] dtype {dtype} is not supported; use one of {_SPEC_DTYPES}")
        out[name] = (shape, dtype)
    return out


def _check_cache(cache: Any) -> NegativeCache:
    if not isinstance(cache, NegativeCache):
        raise TypeError(f"cache must be a NegativeCache, got {type(cache).__name__}")
    return cache


def _check_dense(x: Any, name: str) -> None:
    """A TypeError naming `name` unless `x` is a dense (strided, not quantized) torch.Tensor."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    _kind(x, name)  # sparse, quantized and other layouts: "must be a dense tensor"


def _check_rows(x: Any, name: str, spec: Spec, cache: NegativeCache, rows: Optional[int]) -> Tensor:
    """`x` checked as `[n, *shape]` of the spec's kind on the cache's device, detached (its own dtype)."""
    shape, dtype = spec
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    _check_dense(x, name)
    if x.device != cache.device:
        raise ValueError(f"{name} is on {x.device} but the cache is on {cache.device}")
    if x.dim() != 1 + len(shape) or tuple(x.shape[1:]) != shape:
        want = "[n" + "".join(f", {s}" for s in shape) + "]"
        raise ValueError(f"{name} has shape {tuple(x.shape)}, expected {want}")
    if rows is not None and x.shape[0] != rows:
        raise ValueError(f"{name} has {x.shape[0]} rows, expected {rows} like the other items")
    if x.is_complex() or x.dtype.is_floating_point != dtype.is_floating_point:
        kind = "floating-point" if dtype.is_floating_point else "integer or bool"
        raise TypeError(f"{name} must be {kind} like its spec ({dtype}), got {x.dtype}")
    return x.detach()


def _int_range(dtype: torch.dtype) -> Tuple[int, int]:
    if dtype == torch.bool:
        return 0, 1
    info = torch.iinfo(dtype)
    return int(info.min), int(info.max)


def _to_spec(x: Tensor, name: str, dtype: torch.dtype, rows: Optional[Tensor] = None) -> Tensor:
    """`x` in the spec's dtype, or a ValueError naming `name` and the row when a value would
    not be stored as given: an integer outside the dtype's range (0/1 for bool), a float
    that overflows to inf, or a NaN or inf (the cache stores finite values only, since one
    NaN embedding would make every later loss NaN). `rows`: the caller's row of each row."""
    out = x.to(dtype)
    if x.numel() == 0 or (x.dtype == dtype and not dtype.is_floating_point):
        return out
    if dtype.is_floating_point:
        # min and max propagate NaN: both finite means every value is (one fast pass, one sync)
        if all(math.isfinite(v) for v in torch.stack(torch.aminmax(out)).tolist()):
            return out
        bad = ~torch.isfinite(out)
    else:
        xi = x
        if x.dtype == torch.uint64:  # values >= 2**63 fit no other dtype; the rest fit int64
            xi = x.view(torch.int64)
        elif x.dtype in (torch.uint16, torch.uint32):
            xi = x.to(torch.int64)
        (lo, hi), (src_lo, src_hi) = _int_range(dtype), _int_range(xi.dtype)
        if lo <= src_lo and src_hi <= hi and x.dtype != torch.uint64:
            return out  # every value of the input dtype fits
        lo, hi = max(lo, src_lo), min(hi, src_hi)
        x_lo, x_hi = (int(v) for v in torch.stack(torch.aminmax(xi)).tolist())
        if lo <= x_lo and x_hi <= hi and not (x.dtype == torch.uint64 and x_lo < 0):
            return out
        bad = (xi < lo) | (xi > hi)
        if x.dtype == torch.uint64:
            bad = bad | (xi < 0)
    per_row = bad.reshape(bad.shape[0], -1).any(dim=1)
    if not bool(per_row.any()):
        return out
    i = int(per_row.nonzero()[0, 0])
    row = i if rows is None else int(rows[i])
    # uint64 through its int64 view: older torch (2.7) cannot index uint64 tensors
    xv = x.view(torch.int64) if x.dtype == torch.uint64 else x
    value = xv[i].reshape(-1)[bad[i].reshape(-1)][0].item()
    if x.dtype == torch.uint64 and value < 0:
        value += 2**64
    if dtype.is_floating_point and math.isfinite(value):
        why = f"which overflows {dtype} (largest finite {torch.finfo(dtype).max:g})"
    elif dtype.is_floating_point:
        why = "and the cache stores finite values only"
    else:
        lo, hi = _int_range(dtype)
        why = f"outside the range of {dtype}, [{lo}, {hi}]"
    raise ValueError(f"{name} row {row} holds {value}, {why}")


def _check_mask(mask: Any, name: str, n: int, device: torch.device) -> Optional[Tensor]:
    if mask is None:
        return None
    if not isinstance(mask, Tensor) or mask.dtype != torch.bool:
        raise TypeError(f"{name} must be a bool torch.Tensor")
    _check_dense(mask, name)
    if tuple(mask.shape) != (n,):
        raise ValueError(f"{name} has shape {tuple(mask.shape)}, expected ({n},)")
    if mask.device != device:
        raise ValueError(f"{name} is on {mask.device} but the cache is on {device}")
    return mask


def _last_occurrences(idx: Tensor) -> Tensor:
    """Positions that hold the last occurrence of each distinct value of `idx`, ascending by value."""
    sorted_idx, perm = torch.sort(idx, stable=True)
    last = torch.ones_like(sorted_idx, dtype=torch.bool)
    last[:-1] = sorted_idx[1:] != sorted_idx[:-1]
    return perm[last]


# ---------------------------------------------------------------------------------------
# Slots holding the same document as a given row (exclude_keys)

_HASH_P = 2**31 - 1  # a prime; every product below stays under 2**62, every sum under 2**63
_HASH_BLOCK = 64  # columns hashed at a time: the int64 copy is at most [rows, 64]
_VERIFY_ELEMENTS = 1 << 22  # candidate pairs are compared exactly in chunks of this many values


@lru_cache(maxsize=64)
def _hash_weights(start: int, stop: int) -> Tensor:
    """`r^(l+1) mod P` for columns l in [start, stop), r = 16807 (a primitive root mod P): a
    polynomial (Rabin-Karp) hash, so swapped or shifted tokens do not collide systematically."""
    w, out = pow(16807, start + 1, _HASH_P), []
    for _ in range(start, stop):
        out.append(w)
        w = w * 16807 % _HASH_P
    return torch.tensor(out, dtype=torch.int64)


def _row_hash(fields: List[Tensor]) -> Tensor:
    """[n] int64: `sum_l (x_l mod P) r^(l+1) mod P` over the values of every field of a row
    (the fields' values flattened and laid end to end; integers compared as int64)."""
    n = fields[0].shape[0]
    h = torch.zeros(n, dtype=torch.int64, device=fields[0].device)
    col = 0
    for x in fields:
        x = x.reshape(n, math.prod(x.shape[1:]))
        for a in range(0, x.shape[1], _HASH_BLOCK):
            block = x[:, a : a + _HASH_BLOCK].to(torch.int64).remainder(_HASH_P)
            w = _hash_weights(col + a, col + a + block.shape[1]).to(block.device)
            h = (h + block.mul_(w).remainder_(_HASH_P).sum(dim=1)).remainder_(_HASH_P)
        col += x.shape[1]
    return h


def matching_slots(rows: Mapping[str, Tensor], cache_fields: Mapping[str, Tensor], filled: Tensor) -> Tensor:
    """M[i, j] = filled_j and rows[k][i] == cache_fields[k][j] for every field k (all values).

    Exact, in O((n + C) m) memory rather than O(n C m) for rows of m values: rows and slots
    are hashed (a polynomial hash mod 2^31 - 1), and only pairs with equal hashes are compared
    value by value, so a hash collision costs time, never a wrong answer.

    Args:
      rows: {name: [n, *shape]} integer or bool.
      cache_fields: {name: [C, *shape]} integer or bool, the same names and shapes.
      filled: [C] bool; empty slots never match.

    Returns:
      [n, C] bool.
    """
    names = sorted(rows)
    a = [rows[k] for k in names]
    b = [cache_fields[k] for k in names]
    n, c = a[0].shape[0], b[0].shape[0]
    cand = (_row_hash(a)[:, None] == _row_hash(b)[None, :]) & filled[None, :]
    i, j = cand.nonzero(as_tuple=True)
    if i.numel() == 0:
        return cand
    width = max(1, sum(x[0].numel() for x in a))
    step = max(1, _VERIFY_ELEMENTS // width)
    same = []
    for s in range(0, i.numel(), step):
        ii, jj = i[s : s + step], j[s : s + step]
        eq = torch.ones(ii.shape[0], dtype=torch.bool, device=ii.device)
        for x, y in zip(a, b):
            m = math.prod(x.shape[1:])
            xs = x[ii].reshape(ii.shape[0], m).to(torch.int64)
            ys = y[jj].reshape(jj.shape[0], m).to(torch.int64)
            eq &= (xs == ys).all(dim=1)
        same.append(eq)
    out = torch.zeros(n, c, dtype=torch.bool, device=cand.device)
    keep = torch.cat(same)
    out[i[keep], j[keep]] = True
    return out


# ---------------------------------------------------------------------------------------
# The cache


class CacheManager:
    """Creates and updates a `NegativeCache` of `cache_size` slots laid out by `specs`.

    Args:
      specs: {name: (shape, dtype)}, one entry per stored field, e.g. the document's
        tokens `((16,), torch.int64)` and its embedding `((64,), torch.float32)`. A shape
        is a tuple (or list) of non-negative Python ints (an int n means `(n,)`; floats,
        bools and tensors are refused rather than truncated); a dtype is a torch.dtype.
      cache_size: the number of slots, a positive int.
      use_lru: refreshing a slot's data makes it the youngest (else FIFO by insertion).
    """

    def __init__(self, specs: Mapping[str, Spec], cache_size: int, use_lru: bool = True) -> None:
        self.specs = _check_specs(specs)
        self.cache_size = _check_int(cache_size, "cache_size")
        self.use_lru = bool(use_lru)

    def init_cache(self, device: Union[str, torch.device] = "cpu") -> NegativeCache:
        """A new cache on `device`: every slot empty, zero data, age 0.

        Returns:
          `NegativeCache` with data {name: [cache_size, *shape]}, age [cache_size] int64,
          filled [cache_size] bool.
        """
        device = torch.device(device)
        c = self.cache_size
        data = {
            k: torch.zeros((c, *shape), dtype=dtype, device=device)
            for k, (shape, dtype) in self.specs.items()
        }
        age = torch.zeros(c, dtype=torch.int64, device=device)
        return NegativeCache(data, age, torch.zeros(c, dtype=torch.bool, device=device))

    def _check_layout(self, cache: NegativeCache) -> None:
        if set(cache.data) != set(self.specs):
            raise ValueError(f"cache has fields {sorted(cache.data)}, specs has {sorted(self.specs)}")
        if cache.cache_size != self.cache_size:
            raise ValueError(f"cache has {cache.cache_size} slots, expected cache_size={self.cache_size}")

    def update_cache(
        self,
        cache: NegativeCache,
        new_items: Optional[Mapping[str, Tensor]] = None,
        updated_item_indices: Optional[Tensor] = None,
        updated_item_data: Optional[Mapping[str, Tensor]] = None,
        *,
        new_items_mask: Optional[Tensor] = None,
        updated_item_mask: Optional[Tensor] = None,
        inplace: bool = False,
    ) -> NegativeCache:
        """Refreshes, then inserts, then ages; returns the new cache.

        1. `updated_item_data[k][i]` goes into slot `updated_item_indices[i]` (with use_lru
           that slot becomes the youngest). The last write to a slot wins; refreshes of
           empty slots and rows where `updated_item_mask` is False are dropped.
        2. `new_items` (every spec field, `[n, *shape]`, rows where `new_items_mask` is
           True) go into the n oldest slots, ties to the lowest index, item i into the
           i-th oldest; they become filled and the youngest.
        3. Every slot ages by one.

        A value is stored only if it fits its spec's dtype exactly as given: integers in
        the dtype's range (0 or 1 for bool), floats finite before and after the cast
        (rounding to the dtype's precision is accepted). Rows that are not stored (masked
        out, or refreshing an empty slot) are not checked.

        Args:
          cache: the cache to update (unchanged unless `inplace`).
          new_items: {name: Tensor[n, *shape]} for every spec field, n <= cache_size.
          updated_item_indices: [m] integer slots in [0, cache_size).
          updated_item_data: {name: Tensor[m, *shape]} for some spec fields.
          new_items_mask: [n] bool, the new items to insert (default all).
          updated_item_mask: [m] bool, the refreshes to apply (default all).
          inplace: update the cache's tensors in place and return the same object.

        Returns:
          The updated `NegativeCache`. Nothing is changed when an argument is refused
          (ValueError or TypeError naming it, and the row for a value that does not fit).
        """
        _check_cache(cache)
        self._check_layout(cache)
        refresh = None
        if updated_item_indices is not None or updated_item_data is not None:
            refresh = self._check_refresh(cache, updated_item_indices, updated_item_data, updated_item_mask)
        insert = None
        if new_items is not None:
            insert = self._check_new_items(cache, new_items, new_items_mask)
        return self._apply(cache, refresh, insert, inplace)

    def _apply(
        self,
        cache: NegativeCache,
        refresh: Optional[Tuple[Tensor, Dict[str, Tensor]]],
        insert: Optional[Dict[str, Tensor]],
        inplace: bool,
    ) -> NegativeCache:
        """`update_cache` on checked arguments (from `_check_refresh` and `_check_new_items`)."""
        if not inplace:
            cache = cache.clone()
        data, age, filled = cache.data, cache.age, cache.filled
        if refresh is not None:
            idx, values = refresh
            for k, v in values.items():
                data[k].index_copy_(0, idx, v)
            if self.use_lru:
                age.index_fill_(0, idx, -1)
        if insert is not None and next(iter(insert.values())).shape[0] > 0:
            n = next(iter(insert.values())).shape[0]
            c = self.cache_size
            # Oldest first, ties to the lowest index: the largest keys age * c - index.
            slots = (age * c - torch.arange(c, device=age.device)).topk(n).indices
            for k, v in insert.items():
                data[k].index_copy_(0, slots, v)
            filled.index_fill_(0, slots, True)
            age.index_fill_(0, slots, -1)
        age.add_(1)
        return cache

    def _check_refresh(
        self, cache: NegativeCache, indices: Any, values: Any, mask: Any
    ) -> Tuple[Tensor, Dict[str, Tensor]]:
        if indices is None or values is None:
            raise ValueError("updated_item_indices and updated_item_data must be given together")
        _check_dense(indices, "updated_item_indices")
        if indices.dtype.is_floating_point or indices.is_complex() or indices.dtype == torch.bool:
            raise TypeError(f"updated_item_indices must be an integer tensor, got {indices.dtype}")
        if indices.dim() != 1:
            raise ValueError(f"updated_item_indices must be 1-D [m], got shape {tuple(indices.shape)}")
        if indices.device != cache.device:
            raise ValueError(
                f"updated_item_indices is on {indices.device} but the cache is on {cache.device}"
            )
        if not isinstance(values, Mapping):
            raise TypeError("updated_item_data must be a dict {name: Tensor[m, *shape]}")
        extra = set(values) - set(self.specs)
        if extra:
            raise ValueError(f"updated_item_data has fields {sorted(extra)} that are not in specs")
        m = indices.shape[0]
        names = {k: f"updated_item_data[{k!r}]" for k in values}
        vals = {k: _check_rows(v, names[k], self.specs[k], cache, m) for k, v in values.items()}
        mask = _check_mask(mask, "updated_item_mask", m, cache.device)
        idx = indices.to(torch.int64)
        if m and bool(((idx < 0) | (idx >= self.cache_size)).any()):
            raise ValueError(f"updated_item_indices must lie in [0, {self.cache_size})")
        keep = cache.filled[idx] if m else torch.zeros(0, dtype=torch.bool, device=cache.device)
        if mask is not None:
            keep = keep & mask
        rows = keep.nonzero().flatten()
        rows = rows[_last_occurrences(idx[rows])]
        out = {k: _to_spec(v[rows], names[k], self.specs[k][1], rows) for k, v in vals.items()}
        return idx[rows], out

    def _check_new_items(
        self,
        cache: NegativeCache,
        items: Any,
        mask: Any,
        what: str = "new_items",
        names: Optional[Mapping[str, str]] = None,
        first: Optional[str] = None,
    ) -> Dict[str, Tensor]:
        """The rows of `items` to insert, in the specs' dtypes. Errors call the argument
        `what` and field k `names[k]` (default `what[k]`); the other fields must have as
        many rows as field `first` (default the first spec field)."""
        if not isinstance(items, Mapping):
            raise TypeError(f"{what} must be a dict {{name: Tensor[n, *shape]}}")
        if set(items) != set(self.specs):
            missing, extra = set(self.specs) - set(items), set(items) - set(self.specs)
            raise ValueError(
                f"{what} must have exactly the spec fields {sorted(self.specs)}"
                + (f"; missing {sorted(missing)}" if missing else "")
                + (f"; unknown {sorted(extra)}" if extra else "")
            )
        label = {k: f"{what}[{k!r}]" for k in self.specs}
        label.update(names or {})
        out: Dict[str, Tensor] = {}
        rows: Optional[int] = None
        for k in sorted(self.specs, key=lambda k: k != first):
            out[k] = _check_rows(items[k], label[k], self.specs[k], cache, rows)
            rows = out[k].shape[0]
        n = next(iter(out.values())).shape[0]
        mask = _check_mask(mask, f"{what}_mask", n, cache.device)
        kept = None
        if mask is not None:
            kept = mask.nonzero().flatten()
            out = {k: v[kept] for k, v in out.items()}
            n = int(kept.shape[0])
        if n > self.cache_size:
            raise ValueError(f"{what} has {n} items, more than cache_size={self.cache_size}")
        return {k: _to_spec(v, label[k], self.specs[k][1], kept) for k, v in out.items()}

    # -- checkpoints --------------------------------------------------------------------

    def _specs_state(self) -> Dict[str, Dict[str, Any]]:
        return {
            k: {"shape": list(shape), "dtype": str(dtype).split(".")[-1]}
            for k, (shape, dtype) in self.specs.items()
        }

    def state_dict(self, cache: NegativeCache) -> Dict[str, Any]:
        """`cache` as a checkpoint entry: tensors, ints, strs, lists and dicts only, so
        `torch.load(path, weights_only=True)` reads it back.

        Like `nn.Module.state_dict`, the tensors are the cache's own (not copies): save it,
        or `copy.deepcopy` it, before the cache is updated in place again.

        Args:
          cache: a cache laid out by this manager.

        Returns:
          {"specs": {name: {"shape": [int], "dtype": str}}, "cache_size": int,
          "data": {name: Tensor[cache_size, *shape]}, "age": Tensor[cache_size] int64,
          "filled": Tensor[cache_size] bool}
        """
        _check_cache(cache)
        self._check_layout(cache)
        return {
            "specs": self._specs_state(),
            "cache_size": self.cache_size,
            "data": {k: cache.data[k].detach() for k in self.specs},
            "age": cache.age.detach(),
            "filled": cache.filled.detach(),
        }

    def load_state_dict(
        self, state_dict: Mapping[str, Any], device: Optional[Union[str, torch.device]] = None
    ) -> NegativeCache:
        """The cache saved by `state_dict`, as a new `NegativeCache` (copies of the tensors).

        Args:
          state_dict: what `state_dict` returned; its specs and cache_size must be this
            manager's (`use_lru` is policy, not state: it may differ).
          device: where the cache lives; default, where the saved tensors are.

        Returns:
          The `NegativeCache`, equal to the saved one: data, ages and filled flags.
        """
        return _cache_from_state(self, state_dict, device)


def _cache_from_state(
    manager: CacheManager,
    state: Any,
    device: Optional[Union[str, torch.device]],
    name: str = "state_dict",
) -> NegativeCache:
    if not isinstance(state, Mapping):
        raise TypeError(
            f"{name} must be a dict as CacheManager.state_dict returns, got {type(state).__name__}"
        )
    want = {"specs", "cache_size", "data", "age", "filled"}
    if set(state) != want:
        raise ValueError(f"{name} must have the keys {sorted(want)}, got {sorted(state)}")
    if state["specs"] != manager._specs_state():
        raise ValueError(
            f"{name}['specs'] is {state['specs']}, but this manager's specs are {manager._specs_state()}"
        )
    c = manager.cache_size
    if state["cache_size"] != c:
        raise ValueError(f"{name}['cache_size'] is {state['cache_size']!r}, but this manager's is {c}")
    tensors: Dict[str, Tuple[Any, Tuple[int, ...], torch.dtype]] = {
        f"{name}['age']": (state["age"], (c,), torch.int64),
        f"{name}['filled']": (state["filled"], (c,), torch.bool),
    }
    data = state["data"]
    if not isinstance(data, Mapping) or set(data) != set(manager.specs):
        got = sorted(data) if isinstance(data, Mapping) else type(data).__name__
        raise ValueError(f"{name}['data'] must hold the fields {sorted(manager.specs)}, got {got}")
    for k, (shape, dtype) in manager.specs.items():
        tensors[f"{name}['data'][{k!r}]"] = (data[k], (c, *shape), dtype)
    for label, (t, shape, dtype) in tensors.items():
        if not isinstance(t, Tensor) or tuple(t.shape) != shape or t.dtype != dtype:
            got = f"{tuple(t.shape)} {t.dtype}" if isinstance(t, Tensor) else type(t).__name__
            raise ValueError(f"{label} must be a {dtype} tensor of shape {shape}, got {got}")
    dev = torch.device(device) if device is not None else state["age"].device
    age = state["age"].to(dev, copy=True)
    if c and bool((age < 0).any()):
        raise ValueError(f"{name}['age'] must not be negative")
    out = {
        k: _to_spec(data[k].to(dev, copy=True), f"{name}['data'][{k!r}]", dtype)
        for k, (_, dtype) in manager.specs.items()
    }
    return NegativeCache(out, age, state["filled"].to(dev, copy=True))
