"""Trending: the aggregator's per-minute buckets merged over a window, cached about a second."""

from __future__ import annotations

import asyncio
import heapq
import time
from collections.abc import Callable
from typing import Any, Final

from redis.asyncio import Redis

from shared.tallies import TREND_BUCKET_SECONDS, trend_key

# Minutes per window; a window ends with the current (still filling) minute.
WINDOW_MINUTES: Final = {"5m": 5, "1h": 60, "24h": 24 * 60}
MAX_LIMIT: Final = 100

Ranking = list[tuple[str, int]]


class Trending:
    """The top articles per (reaction, window), merged with one ZUNION and cached `ttl` s."""

    def __init__(
        self,
        redis: Redis,
        *,
        ttl: float,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._redis = redis
        self._ttl = ttl
        self._clock = clock
        self._wall_clock = wall_clock
        self._cache: dict[tuple[str, str], tuple[float, Ranking]] = {}
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}

    async def top(self, reaction: str, window: str, limit: int) -> Ranking:
        """The `limit` articles with the highest net count of `reaction` in `window`."""
        key = (reaction, window)
        entry = self._cache.get(key)
        if entry is None or entry[0] <= self._clock():
            # One merge per key at a time: concurrent requests wait for it, not repeat it.
            async with self._locks.setdefault(key, asyncio.Lock()):
                entry = self._cache.get(key)
                if entry is None or entry[0] <= self._clock():
                    entry = (self._clock() + self._ttl, await self._merge(reaction, window))
                    self._cache[key] = entry
        return entry[1][:limit]

    async def _merge(self, reaction: str, window: str) -> Ranking:
        minute = int(self._wall_clock()) // TREND_BUCKET_SECONDS
        keys = [
            trend_key(reaction, m) for m in range(minute - WINDOW_MINUTES[window] + 1, minute + 1)
        ]
        # The buckets of one reaction share a hash tag: one ZUNION works on Redis Cluster.
        pairs: list[Any] = await self._redis.zunion(keys, withscores=True)
        scored = ((bytes(member).decode(), round(float(score))) for member, score in pairs)
        # Net deltas can cancel out or go negative over a window; only gains are trending.
        return heapq.nsmallest(
            MAX_LIMIT, (p for p in scored if p[1] > 0), key=lambda p: (-p[1], p[0])
        )
