"""Models kept in memory: one bounded, least-recently-used cache, and giving accelerator memory back."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any


def free_accelerator_memory() -> None:
    """Collect garbage and return cached CUDA memory, so a dropped model or a failed run does not starve the next."""
    import gc

    gc.collect()
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


class LRUCache:
    """At most `capacity` loaded models; the least recently used one is dropped (and its memory freed) before the
    next one loads, so two never sit in memory beyond the bound. Thread-safe."""

    def __init__(self, capacity: int) -> None:
        self.capacity = max(1, capacity)
        self._items: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.RLock()

    def get(self, key: Hashable, load: Callable[[], Any]) -> Any:
        """The cached value for `key`, or `load()`'s, cached."""
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
            while len(self._items) >= self.capacity:
                self._items.popitem(last=False)
                free_accelerator_memory()
            self._items[key] = value = load()
            return value

    def items(self) -> list[tuple[Hashable, Any]]:
        """(key, value) pairs, least recently used first."""
        with self._lock:
            return list(self._items.items())

    def __contains__(self, key: Hashable) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)
