"""Trending: the aggregator's buckets merged over a window, cached a second or more.

A window is cut into the coarsest buckets that fit it whole: hourly and 5-minute rollups in
the middle, minute buckets at its edges, so every window is exact to the minute and merges
at most 5 sets (5 min), 16 (1 h) or 39 (24 h) instead of 5, 60 or 1,440. Before the first
minute the rollups hold whole (aggregators that did not write them ran until then), the
window merges minute buckets there. The merge runs in Redis, into a key the same script
deletes, and only the top comes back: a window's union can hold every article of a day.
A list is reused for the configured time, longer for the longer windows (a 24 h list
changes little in a second, and costs the most to merge).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, Final

from redis.asyncio import Redis

from shared.tallies import (
    TREND_BUCKET_SECONDS,
    TREND_HORIZON_MINUTES,
    TREND_ROLLUPS_SINCE_KEY,
    TREND_SPANS,
    trend_bucket_key,
    trend_merge_key,
)

# Minutes per window; a window ends with the current (still filling) minute.
WINDOW_MINUTES: Final = {"5m": 5, "1h": 60, "24h": TREND_HORIZON_MINUTES}
MAX_LIMIT: Final = 100
# A window's list is reused its minutes / REUSE_MINUTES times the configured time (at least
# once): with the default second, 2.5 s for 1 h and a minute for 24 h.
REUSE_MINUTES: Final = 24
# KEYS: the window's buckets, then the scratch key (same hash tag); ARGV[1]: how many.
# Weights of -1 make the highest net delta the lowest score, so ties come in id order, as
# the API ranks them; only gains are trending (negated: below 0). allow-oom: the scratch
# key is gone when the call ends, so a Redis full of counts (noeviction) serves the lists
# on, as it serves the counts, instead of refusing the call.
TOP_SCRIPT: Final = """#!lua flags=allow-oom
local scratch, n = KEYS[#KEYS], #KEYS - 1
local args = {'ZUNIONSTORE', scratch, n}
for i = 1, n do args[#args + 1] = KEYS[i] end
args[#args + 1] = 'WEIGHTS'
for i = 1, n do args[#args + 1] = -1 end
redis.call(unpack(args))
local top = redis.call('ZRANGE', scratch, '-inf', '(0', 'BYSCORE', 'LIMIT', 0, ARGV[1],
  'WITHSCORES')
redis.call('DEL', scratch)
return top
"""

Ranking = list[tuple[str, int]]
# A trending bucket: its span in minutes (one of TREND_SPANS) and its index.
Bucket = tuple[int, int]


def window_buckets(last_minute: int, minutes: int, rollups_since: int | None) -> list[Bucket]:
    """The buckets that hold the `minutes` minutes ending with `last_minute`, each minute
    once: rollups wherever they hold every minute of theirs (from `rollups_since` on),
    minute buckets elsewhere."""
    first = last_minute - minutes + 1
    whole = last_minute + 1 if rollups_since is None else max(first, rollups_since)
    minute_buckets = [(1, m) for m in range(first, min(whole, last_minute + 1))]
    return minute_buckets + _cover(whole, last_minute, TREND_SPANS)


def _cover(first: int, last: int, spans: tuple[int, ...]) -> list[Bucket]:
    """Minutes first..last in the coarsest aligned buckets of `spans` (which end with 1)."""
    if first > last:
        return []
    span, finer = spans[0], spans[1:]
    if not finer:
        return [(span, m) for m in range(first, last + 1)]
    lo, hi = -(-first // span), (last + 1) // span - 1  # the buckets wholly inside
    if lo > hi:
        return _cover(first, last, finer)
    return [
        *_cover(first, lo * span - 1, finer),
        *((span, i) for i in range(lo, hi + 1)),
        *_cover((hi + 1) * span, last, finer),
    ]


class Trending:
    """The top articles per (reaction, window), merged in one script call and cached `ttl` s
    (longer windows longer)."""

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
        self._top = redis.register_script(TOP_SCRIPT)

    async def top(self, reaction: str, window: str, limit: int) -> Ranking:
        """The `limit` articles with the highest net count of `reaction` in `window`."""
        key = (reaction, window)
        entry = self._cache.get(key)
        if entry is None or entry[0] <= self._clock():
            # One merge per key at a time: concurrent requests wait for it, not repeat it.
            async with self._locks.setdefault(key, asyncio.Lock()):
                entry = self._cache.get(key)
                if entry is None or entry[0] <= self._clock():
                    reuse = self._ttl * max(1.0, WINDOW_MINUTES[window] / REUSE_MINUTES)
                    entry = (self._clock() + reuse, await self._merge(reaction, window))
                    self._cache[key] = entry
        return entry[1][:limit]

    async def _merge(self, reaction: str, window: str) -> Ranking:
        minute = int(self._wall_clock()) // TREND_BUCKET_SECONDS
        since = await self._redis.get(TREND_ROLLUPS_SINCE_KEY)
        buckets = window_buckets(
            minute, WINDOW_MINUTES[window], None if since is None else int(since)
        )
        keys = [trend_bucket_key(reaction, span, index) for span, index in buckets]
        # The buckets of one reaction and its scratch key share a hash tag: one script call
        # works on Redis Cluster too.
        flat: list[Any] = await self._top(keys=[*keys, trend_merge_key(reaction)], args=[MAX_LIMIT])
        return [
            (bytes(member).decode(), -round(float(score)))
            for member, score in zip(flat[::2], flat[1::2], strict=True)
        ]
