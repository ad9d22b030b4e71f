"""The tally micro-cache: bounded staleness and size, invalidation, single flight, and
the misses of concurrent requests read together."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from services.reader.cache import CACHE_LOOKUPS, Counts, TallyCache


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Store:
    """A loader over a dict that records every call (one call = one Redis round trip)."""

    def __init__(self) -> None:
        self.values: dict[str, int] = {}
        self.calls: list[list[str]] = []
        self.gate: asyncio.Event | None = None
        self.fail = False

    async def load(self, ids: Sequence[str]) -> list[Counts]:
        self.calls.append(list(ids))
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            raise ConnectionError("redis down")
        return [(self.values.get(i, 0),) for i in ids]


def cache_for(
    store: Store, clock: Clock, *, ttl: float = 0.5, entries: int = 100
) -> TallyCache[Counts]:
    return TallyCache(store.load, ttl=ttl, max_entries=entries, clock=clock)


def lookups(result: str) -> float:
    return CACHE_LOOKUPS.labels(result)._value.get()


async def test_hits_within_ttl_and_reloads_after() -> None:
    store, clock = Store(), Clock()
    cache = cache_for(store, clock)
    store.values["a"] = 1
    hits, misses = lookups("hit"), lookups("miss")
    assert await cache.get_many(["a"]) == [(1,)]
    store.values["a"] = 2
    clock.now += 0.49
    assert await cache.get_many(["a"]) == [(1,)]  # within the staleness bound
    assert (lookups("hit") - hits, lookups("miss") - misses) == (1, 1)
    clock.now += 0.02
    assert await cache.get_many(["a"]) == [(2,)]  # never older than the ttl
    assert len(store.calls) == 2


async def test_invalidate_drops_an_entry() -> None:
    store, clock = Store(), Clock()
    cache = cache_for(store, clock)
    store.values["a"] = 1
    await cache.get_many(["a"])
    store.values["a"] = 5
    cache.invalidate(["a", "unknown"])
    assert await cache.get_many(["a"]) == [(5,)]


async def test_size_is_bounded_the_entry_read_longest_ago_first() -> None:
    store, clock = Store(), Clock()
    cache = cache_for(store, clock, entries=3)
    await cache.get_many(["a", "b", "c"])
    clock.now += 0.1
    await cache.get_many(["a"])  # a hit: a still expires first, so it still goes first
    await cache.get_many(["d"])
    assert len(cache) == 3
    store.calls.clear()
    await cache.get_many(["b", "c", "d"])
    assert store.calls == []
    await cache.get_many(["a"])  # a was evicted
    assert store.calls == [["a"]]


async def test_misses_of_concurrent_requests_are_read_together() -> None:
    store, clock = Store(), Clock()
    store.values.update(a=1, b=2, c=3)
    cache = cache_for(store, clock)
    # Requests that run in one turn of the loop: one read for all their misses.
    results = await asyncio.gather(
        cache.get_many(["a", "b"]), cache.get_many(["b", "c"]), cache.get_many(["c"])
    )
    assert results == [[(1,), (2,)], [(2,), (3,)], [(3,)]]
    assert store.calls == [["a", "b", "c"]]


async def test_peek_sees_an_expired_value_fresh_does_not() -> None:
    store, clock = Store(), Clock()
    store.values["a"] = 4
    cache = cache_for(store, clock)
    assert cache.peek("a") is None and cache.fresh("a") is None
    await cache.get_many(["a"])
    assert cache.fresh("a") == (4,)
    clock.now += 0.6
    assert cache.fresh("a") is None
    assert cache.peek("a") == (4,)  # what a reload compares its row with


async def test_misses_are_read_in_one_call() -> None:
    store, clock = Store(), Clock()
    cache = cache_for(store, clock)
    await cache.get_many(["b"])
    store.calls.clear()
    assert await cache.get_many(["a", "b", "c"]) == [(0,), (0,), (0,)]
    assert store.calls == [["a", "c"]]


async def test_concurrent_misses_share_one_read() -> None:
    store, clock = Store(), Clock()
    store.gate = asyncio.Event()
    store.values["a"] = 7
    cache = cache_for(store, clock)
    readers = [asyncio.create_task(cache.get_many(["a"])) for _ in range(50)]
    await asyncio.sleep(0)
    store.gate.set()
    assert await asyncio.gather(*readers) == [[(7,)]] * 50
    assert store.calls == [["a"]]


async def test_a_read_invalidated_in_flight_is_answered_but_not_kept() -> None:
    store, clock = Store(), Clock()
    store.gate = asyncio.Event()
    store.values["a"] = 1
    cache = cache_for(store, clock)
    first = asyncio.create_task(cache.get_many(["a"]))
    await asyncio.sleep(0)
    cache.invalidate(["a"])  # the change landed after the read began
    store.gate.set()
    assert await first == [(1,)]
    store.values["a"] = 2
    assert await cache.get_many(["a"]) == [(2,)]
    assert len(store.calls) == 2


async def test_errors_reach_every_waiter_and_are_not_cached() -> None:
    store, clock = Store(), Clock()
    store.gate = asyncio.Event()
    store.fail = True
    cache = cache_for(store, clock)
    readers = [asyncio.create_task(cache.get_many(["a"])) for _ in range(3)]
    await asyncio.sleep(0)
    store.gate.set()
    results = await asyncio.gather(*readers, return_exceptions=True)
    assert all(isinstance(r, ConnectionError) for r in results)
    store.fail = False
    store.values["a"] = 3
    assert await cache.get_many(["a"]) == [(3,)]


@pytest.mark.parametrize("ttl", [0.0])
async def test_zero_ttl_disables_caching(ttl: float) -> None:
    store, clock = Store(), Clock()
    cache = cache_for(store, clock, ttl=ttl)
    await cache.get_many(["a"])
    await cache.get_many(["a"])
    assert len(store.calls) == 2
