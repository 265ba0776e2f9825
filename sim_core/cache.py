"""A least-recently-used cache bounded by the bytes of its values (and optionally by a count),
shared by threads: the structure-factor grids read from HKL files and the tables computed from
models and MTZ files are kept in one each, so that a warm worker does not redo them for every job."""

from __future__ import annotations

import threading
from collections import OrderedDict


class ByteLRU:
    """Least recently used items, at most ``max_bytes`` of them in all (when given) and at most
    ``entries`` items (when given). An item larger than the whole budget is not kept."""

    def __init__(self, max_bytes: int | None, entries: int | None = None):
        self.max_bytes = max_bytes
        self.entries = entries
        self._items: OrderedDict = OrderedDict()
        self.bytes = 0
        self.hits = self.misses = 0
        self._lock = threading.Lock()

    def get(self, key):
        with self._lock:
            item = self._items.get(key)
            if item is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return item[0]

    def put(self, key, value, nbytes: int) -> None:
        with self._lock:
            if key in self._items:
                self.bytes -= self._items.pop(key)[1]
            if self.max_bytes is not None and nbytes > self.max_bytes:
                return
            self._items[key] = (value, nbytes)
            self.bytes += nbytes
            while ((self.max_bytes is not None and self.bytes > self.max_bytes)
                   or (self.entries is not None and len(self._items) > self.entries)):
                _, (_, n) = self._items.popitem(last=False)
                self.bytes -= n

    def get_or_make(self, key, make, nbytes=lambda value: 0):
        """The item at ``key``, made (outside the lock) and kept when missing; ``nbytes(value)``
        is its size. Two threads missing at once may both make it; the last one is kept."""
        value = self.get(key)
        if value is None:
            value = make()
            self.put(key, value, nbytes(value))
        return value

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self.bytes = 0
            self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self._items)


__all__ = ["ByteLRU"]
