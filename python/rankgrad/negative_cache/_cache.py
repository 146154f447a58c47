"""The cache: its layout (specs), its slots, and the update rule (refresh, insert, age)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional, Tuple, Union

import torch
from torch import Tensor

__all__ = ["CacheManager", "NegativeCache", "Spec"]

Spec = Tuple[Tuple[int, ...], torch.dtype]


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
        try:
            shape = tuple(int(s) for s in shape)
        except TypeError:
            raise TypeError(f"specs[{name!r}] shape must be a tuple of ints, got {shape!r}") from None
        if any(s < 0 for s in shape):
            raise ValueError(f"specs[{name!r}] shape must not be negative, got {shape}")
        if not isinstance(dtype, torch.dtype):
            raise TypeError(f"specs[{name!r}] dtype must be a torch.dtype, got {dtype!r}")
        out[name] = (shape, dtype)
    return out


def _check_cache(cache: Any, name: str = "cache") -> NegativeCache:
    if not isinstance(cache, NegativeCache):
        raise TypeError(f"{name} must be a NegativeCache, got {type(cache).__name__}")
    return cache


def _check_rows(x: Any, name: str, spec: Spec, cache: NegativeCache, rows: Optional[int]) -> Tensor:
    """`x` as `[n, *shape]` in the spec's dtype on the cache's device, detached."""
    shape, dtype = spec
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
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
    return x.detach().to(dtype)


def _check_mask(mask: Any, name: str, n: int, device: torch.device) -> Optional[Tensor]:
    if mask is None:
        return None
    if not isinstance(mask, Tensor) or mask.dtype != torch.bool:
        raise TypeError(f"{name} must be a bool torch.Tensor")
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
# The cache


class CacheManager:
    """Creates and updates a `NegativeCache` of `cache_size` slots laid out by `specs`.

    Args:
      specs: {name: (shape, dtype)}, one entry per stored field, e.g. the document's
        tokens `((16,), torch.int64)` and its embedding `((64,), torch.float32)`.
      cache_size: the number of slots.
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

        Args:
          cache: the cache to update (unchanged unless `inplace`).
          new_items: {name: Tensor[n, *shape]} for every spec field, n <= cache_size.
          updated_item_indices: [m] integer slots in [0, cache_size).
          updated_item_data: {name: Tensor[m, *shape]} for some spec fields.
          new_items_mask: [n] bool, the new items to insert (default all).
          updated_item_mask: [m] bool, the refreshes to apply (default all).
          inplace: update the cache's tensors in place and return the same object.

        Returns:
          The updated `NegativeCache`. Nothing is changed when an argument is refused.
        """
        _check_cache(cache)
        self._check_layout(cache)
        refresh = None
        if updated_item_indices is not None or updated_item_data is not None:
            refresh = self._check_refresh(cache, updated_item_indices, updated_item_data, updated_item_mask)
        insert = None
        if new_items is not None:
            insert = self._check_new_items(cache, new_items, new_items_mask)

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
        if not isinstance(indices, Tensor):
            raise TypeError(f"updated_item_indices must be a torch.Tensor, got {type(indices).__name__}")
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
        vals = {
            k: _check_rows(v, f"updated_item_data[{k!r}]", self.specs[k], cache, m) for k, v in values.items()
        }
        mask = _check_mask(mask, "updated_item_mask", m, cache.device)
        idx = indices.to(torch.int64)
        if m and bool(((idx < 0) | (idx >= self.cache_size)).any()):
            raise ValueError(f"updated_item_indices must lie in [0, {self.cache_size})")
        keep = cache.filled[idx] if m else torch.zeros(0, dtype=torch.bool, device=cache.device)
        if mask is not None:
            keep = keep & mask
        rows = keep.nonzero().flatten()
        rows = rows[_last_occurrences(idx[rows])]
        return idx[rows], {k: v[rows] for k, v in vals.items()}

    def _check_new_items(self, cache: NegativeCache, items: Any, mask: Any) -> Dict[str, Tensor]:
        if not isinstance(items, Mapping):
            raise TypeError("new_items must be a dict {name: Tensor[n, *shape]}")
        if set(items) != set(self.specs):
            missing, extra = set(self.specs) - set(items), set(items) - set(self.specs)
            raise ValueError(
                f"new_items must have exactly the spec fields {sorted(self.specs)}"
                + (f"; missing {sorted(missing)}" if missing else "")
                + (f"; unknown {sorted(extra)}" if extra else "")
            )
        out: Dict[str, Tensor] = {}
        rows: Optional[int] = None
        for k in self.specs:
            out[k] = _check_rows(items[k], f"new_items[{k!r}]", self.specs[k], cache, rows)
            rows = out[k].shape[0]
        n = next(iter(out.values())).shape[0]
        mask = _check_mask(mask, "new_items_mask", n, cache.device)
        if mask is not None:
            out = {k: v[mask] for k, v in out.items()}
            n = next(iter(out.values())).shape[0]
        if n > self.cache_size:
            raise ValueError(f"new_items has {n} items, more than cache_size={self.cache_size}")
        return out
