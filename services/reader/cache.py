"""The hot-path micro-cache of tallies: in-process, bounded in size and staleness.

A viral article is read thousands of times a second; without this cache every read costs
a Redis round trip. Entries live at most `ttl` seconds (≤ 0.5 s) and are dropped as soon
as the aggregator announces a change on `rx:changed` (while the process holds that
subscription), so a tally is never older than `ttl`. Concurrent misses for the same
article share one Redis read (single flight), and many misses at once are read in one
pipeline.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Final, NamedTuple

from prometheus_client import Counter

CACHE_LOOKUPS: Final = Counter(
    "reactions_reader_cache_total",
    "Tally lookups by result: hit (no Redis round trip of its own, including a wait on a "
    "read already in flight) or miss.",
    ["result"],
)
_HITS: Final = CACHE_LOOKUPS.labels("hit")
_MISSES: Final = CACHE_LOOKUPS.labels("miss")

Counts = tuple[int, ...]


class Tally(NamedTuple):
    """An article's counts and its `seq`: the offset of the last event applied to them."""

    counts: Counts
    seq: int


# Reads the tallies of several articles from Redis in one round trip, in the given order.
TallyLoader = Callable[[Sequence[str]], Awaitable[list[Tally]]]


class TallyCache:
    """Tallies per article, read through `load`, kept ≤ `ttl` seconds and ≤ `max_entries`.

    Counts and seq are cached together, as read together: a cached tally is always one
    moment of the article."""

    def __init__(
        self,
        load: TallyLoader,
        *,
        ttl: float,
        max_entries: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._load = load
        self._ttl = ttl
        self._max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, Tally]] = OrderedDict()
        # Reads in flight: article -> future of its counts. Articles invalidated while
        # their read was in flight are in `_stale_flights`: the result is handed to the
        # waiters (it was current when read) but not kept.
        self._flights: dict[str, asyncio.Future[Tally]] = {}
        self._stale_flights: set[str] = set()

    def __len__(self) -> int:
        return len(self._entries)

    async def get_many(self, article_ids: Sequence[str]) -> list[Tally]:
        """The tally of each article (ids must be distinct), missing ones in one read."""
        now = self._clock()
        found: dict[str, Tally] = {}
        waits: dict[str, asyncio.Future[Tally]] = {}
        misses: list[str] = []
        for article_id in article_ids:
            entry = self._entries.get(article_id)
            if entry is not None and entry[0] > now:
                self._entries.move_to_end(article_id)
                found[article_id] = entry[1]
                _HITS.inc()
            elif article_id in self._flights:
                waits[article_id] = self._flights[article_id]
                _HITS.inc()
            else:
                misses.append(article_id)
                _MISSES.inc()
        if misses:
            await self._read(misses, found)
        for article_id, future in waits.items():
            found[article_id] = await asyncio.shield(future)
        return [found[a] for a in article_ids]

    async def _read(self, misses: list[str], found: dict[str, Tally]) -> None:
        loop = asyncio.get_running_loop()
        futures = {a: loop.create_future() for a in misses}
        self._flights.update(futures)
        try:
            values = await self._load(misses)
        except BaseException as exc:
            for future in futures.values():
                future.set_exception(exc)
                # Waiters see the error; mark it retrieved so an unwaited one is not logged.
                future.exception()
            self._stale_flights.difference_update(misses)
            raise
        finally:
            for article_id in misses:
                self._flights.pop(article_id, None)
        expires = self._clock() + self._ttl
        for article_id, counts in zip(misses, values, strict=True):
            futures[article_id].set_result(counts)
            found[article_id] = counts
            if article_id in self._stale_flights:
                self._stale_flights.discard(article_id)
            elif self._ttl > 0:
                self._store(article_id, expires, counts)

    def _store(self, article_id: str, expires: float, counts: Tally) -> None:
        self._entries[article_id] = (expires, counts)
        self._entries.move_to_end(article_id)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)

    def invalidate(self, article_ids: Iterable[str]) -> None:
        """Forget these articles: their next read goes to Redis."""
        for article_id in article_ids:
            self._entries.pop(article_id, None)
            if article_id in self._flights:
                self._stale_flights.add(article_id)

    def clear(self) -> None:
        """Forget everything (after missed notifications, e.g. a lost subscription)."""
        self._entries.clear()
        self._stale_flights.update(self._flights)
