"""Per-instance memory: short-lived caches and fixed-window rate limits."""
from __future__ import annotations

import random
import time
from typing import Generic, Hashable, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class TTLCache(Generic[K, V]):
    """Tiny dict with per-entry expiry: short enough that a revocation made on
    another instance takes effect within seconds."""

    def __init__(self, ttl_s: float, max_items: int = 200_000) -> None:
        self.ttl = ttl_s
        self.max_items = max_items
        self.data: dict[K, tuple[V, float]] = {}

    def get(self, key: K) -> V | None:
        item = self.data.get(key)
        if item is None:
            return None
        value, expires = item
        if expires < time.monotonic():
            self.data.pop(key, None)
            return None
        return value

    def put(self, key: K, value: V) -> None:
        if len(self.data) >= self.max_items:
            self.data.clear()
        # spread expiries, so entries cached together are not all re-read in the same instant
        self.data[key] = (value, time.monotonic() + self.ttl * random.uniform(0.5, 1.0))

    def drop(self, key: K) -> None:
        self.data.pop(key, None)

    def drop_where(self, doomed) -> None:
        """Drop every entry for which `doomed(key, value)` is true."""
        for key, (value, _expires) in list(self.data.items()):
            if doomed(key, value):
                self.data.pop(key, None)

    def clear(self) -> None:
        self.data.clear()

    def __len__(self) -> int:
        return len(self.data)


class RateLimiter:
    """Fixed-window counter per key, in memory (per instance)."""

    def __init__(self, limit: int, window_s: float) -> None:
        self.limit = limit
        self.window = window_s
        self.hits: dict[str, tuple[float, int]] = {}

    def check(self, key: str, cost: int = 1) -> float | None:
        """None if allowed; else seconds until the window resets."""
        now = time.monotonic()
        start, count = self.hits.get(key, (now, 0))
        if now - start >= self.window:
            start, count = now, 0
        if count + max(cost, 1) > self.limit:
            return max(1.0, self.window - (now - start))
        if len(self.hits) > 100_000:
            self.hits.clear()
        self.hits[key] = (start, count + cost)
        return None

    def __len__(self) -> int:
        return len(self.hits)
