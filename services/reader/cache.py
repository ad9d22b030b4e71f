"""The hot-path micro-cache of tallies: in-process, bounded in size and staleness.

A viral article is read thousands of times a second; without this cache every read costs
a Redis round trip. Entries live at most `ttl` seconds (≤ 0.5 s) and are dropped as soon
as the aggregator announces a change on `rx:changed` (while the process holds that
subscription), so a tally is never older than `ttl`. Concurrent misses for the same
article share one Redis read (single flight), and the misses of every request that runs
in one turn of the event loop are read together, in one call of the loader: a Redis
command costs the client far more than a key in it.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Final, Generic, NamedTuple, TypeVar

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


# What the cache keeps per article (the store keeps each tally with its rendered bytes).
V = TypeVar("V")
# Reads the values of several articles from Redis in one round trip, in the given order.
Loader = Callable[[Sequence[str]], Awaitable[list[V]]]


class TallyCache(Generic[V]):
    """Values per article, read through `load`, kept ≤ `ttl` seconds and ≤ `max_entries`.

    A value is whatever `load` makes of one read of the article (counts and seq, read
    together, and what is rendered from them): always one moment of the article. When
    full, the entry read longest ago goes first: it is the nearest to expiring, however
    often it is used (so a hit moves nothing)."""

    def __init__(
        self,
        load: Loader[V],
        *,
        ttl: float,
        max_entries: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._load = load
        self._ttl = ttl
        self._max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, V]] = OrderedDict()
        # Reads in flight or waiting for this turn's batch: article -> the future of its
        # batch's values by article. Articles invalidated meanwhile are in
        # `_stale_flights`: the result is handed to the waiters (it was current when read)
        # but not kept.
        self._flights: dict[str, asyncio.Future[dict[str, V]]] = {}
        self._stale_flights: set[str] = set()
        self._batch: list[str] = []
        self._batch_done: asyncio.Future[dict[str, V]] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len(self._entries)

    def fresh(self, article_id: str) -> V | None:
        """The article's cached value when it is fresh (a hit), else None (nothing counted)."""
        entry = self._entries.get(article_id)
        if entry is None or entry[0] <= self._clock():
            return None
        _HITS.inc()
        return entry[1]

    def peek(self, article_id: str) -> V | None:
        """The article's last value, fresh or not (nothing counted, nothing moved)."""
        entry = self._entries.get(article_id)
        return None if entry is None else entry[1]

    async def get_many(self, article_ids: Sequence[str]) -> list[V]:
        """The value of each article (ids must be distinct), missing ones read in one batch."""
        now = self._clock()
        entries, flights = self._entries, self._flights
        found: list[Any] = []
        waits: list[tuple[int, str, asyncio.Future[dict[str, V]]]] = []
        misses = 0
        for article_id in article_ids:
            entry = entries.get(article_id)
            if entry is not None and entry[0] > now:
                found.append(entry[1])
                continue
            flight = flights.get(article_id) if flights else None
            if flight is None:
                misses += 1
                flight = self._enqueue(article_id)
            waits.append((len(found), article_id, flight))
            found.append(None)
        if misses:
            _MISSES.inc(misses)
        if len(article_ids) > misses:
            _HITS.inc(len(article_ids) - misses)
        for index, article_id, flight in waits:
            # Shielded: a request that goes away must not cancel a read others wait for.
            values = flight.result() if flight.done() else await asyncio.shield(flight)
            found[index] = values[article_id]
        return found

    def _enqueue(self, article_id: str) -> asyncio.Future[dict[str, V]]:
        done = self._batch_done
        if done is None:
            # The read starts on the loop's next turn, with every miss queued until then.
            loop = asyncio.get_running_loop()
            done = self._batch_done = loop.create_future()
            task = loop.create_task(self._read())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        self._flights[article_id] = done
        self._batch.append(article_id)
        return done

    async def _read(self) -> None:
        misses, self._batch = self._batch, []
        done, self._batch_done = self._batch_done, None
        assert done is not None
        try:
            values = await self._load(misses)
            if len(values) != len(misses):
                raise RuntimeError(f"loader gave {len(values)} values for {len(misses)} ids")
        except Exception as exc:  # noqa: BLE001 - handed to every waiter, who raises it
            self._forget_flights(misses)
            done.set_exception(exc)
            # Waiters see the error; mark it retrieved so an unwaited one is not logged.
            done.exception()
            return
        except BaseException:
            self._forget_flights(misses)
            done.cancel()
            raise
        stale = self._forget_flights(misses)
        done.set_result(dict(zip(misses, values, strict=True)))
        if self._ttl > 0:
            expires = self._clock() + self._ttl
            for article_id, value in zip(misses, values, strict=True):
                if article_id not in stale:
                    self._store(article_id, expires, value)

    def _forget_flights(self, article_ids: list[str]) -> set[str]:
        """End these flights; the ones invalidated meanwhile."""
        stale = self._stale_flights.intersection(article_ids) if self._stale_flights else set()
        self._stale_flights.difference_update(stale)
        for article_id in article_ids:
            self._flights.pop(article_id, None)
        return stale

    def _store(self, article_id: str, expires: float, value: V) -> None:
        self._entries[article_id] = (expires, value)
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
