"""Trending windows over the aggregator's buckets: exact to the minute, a few dozen sets per
window thanks to the rollups, and minute buckets where the rollups are not whole yet (the
minutes before the first aggregator that wrote them); buckets that keep their top articles
only, and lists reused longer for longer windows."""

from __future__ import annotations

import random
import time
from collections import defaultdict
from collections.abc import AsyncIterator

import httpx
import pytest
from redis.asyncio import Redis
from redis.exceptions import OutOfMemoryError

from deploy.local.redis import RedisServer
from services.aggregator.scripts import trend_calls, trend_script
from services.reader.trending import MAX_LIMIT, WINDOW_MINUTES, Trending, window_buckets
from shared.tallies import TREND_BUCKET_MAX, TREND_ROLLUPS_SINCE_KEY, trend_key, trend_keys

# The most sets each window merges once the rollups are whole (instead of 5, 60 and 1,440).
MOST_BUCKETS = {"5m": 5, "1h": 16, "24h": 39}


def _minutes(buckets: list[tuple[int, int]]) -> list[int]:
    return sorted(m for span, index in buckets for m in range(index * span, (index + 1) * span))


def test_each_window_holds_each_minute_once_in_a_few_buckets() -> None:
    for window, minutes in WINDOW_MINUTES.items():
        for last in range(1_000_000, 1_000_000 + 24 * 60):
            buckets = window_buckets(last, minutes, rollups_since=0)
            assert _minutes(buckets) == list(range(last - minutes + 1, last + 1))
            assert len(buckets) <= MOST_BUCKETS[window], (window, last, buckets)


def test_minutes_before_the_rollups_are_whole_come_from_minute_buckets() -> None:
    rng = random.Random(3)
    for _ in range(5000):
        last, window = rng.randrange(10**6, 2 * 10**6), rng.choice(list(WINDOW_MINUTES))
        minutes = WINDOW_MINUTES[window]
        since = last - rng.randrange(-5, minutes + 60)
        buckets = window_buckets(last, minutes, since)
        assert _minutes(buckets) == list(range(last - minutes + 1, last + 1))
        assert all(span == 1 or index * span >= since for span, index in buckets), since
    # No aggregator has written rollups: every minute is its own bucket, as before them.
    assert window_buckets(1000, 60, None) == [(1, m) for m in range(941, 1001)]


@pytest.fixture
async def raw_redis(redis: Redis, redis_server: RedisServer) -> AsyncIterator[Redis]:
    """A client on the emptied Redis that answers bytes, as the reader's does."""
    client = Redis.from_url(redis_server.url)
    yield client
    await client.aclose()


async def test_rollups_merge_to_what_the_minute_buckets_hold(raw_redis: Redis) -> None:
    rng = random.Random(11)
    last = 29_000_000 + rng.randrange(60)
    # A day and more of net deltas, with the negative ones and cancellations of real votes.
    deltas = {
        minute: {f"t{rng.randrange(300)}": rng.randrange(-3, 6) for _ in range(rng.randrange(8))}
        for minute in range(last - 25 * 60, last + 1)
    }
    script = trend_script(raw_redis)
    # Rollups written from `since` on (None: never), minute buckets all along, as an
    # upgrade leaves them; every window must be what the minute buckets alone add up to.
    for since in (None, last - 2000, last - 700, last - 200, last - 30, last - 3, last + 1):
        await raw_redis.flushdb()
        if since is not None:
            await raw_redis.set(TREND_ROLLUPS_SINCE_KEY, since)
        pipe = raw_redis.pipeline(transaction=False)
        for minute, changes in deltas.items():
            pairs = [item for pair in changes.items() for item in pair]
            for keys, args in trend_calls({"all": pairs}, minute, last):
                if since is None or minute < since:
                    keys = (trend_key("all", minute),)  # an aggregator before rollups
                await script(keys=list(keys), args=list(args), client=pipe)
        await pipe.execute()
        trending = Trending(raw_redis, ttl=0, wall_clock=lambda: last * 60 + 59)
        for window, minutes in WINDOW_MINUTES.items():
            net: dict[str, int] = defaultdict(int)
            for minute in range(last - minutes + 1, last + 1):
                for article, delta in deltas[minute].items():
                    net[article] += delta
            want = sorted(((a, n) for a, n in net.items() if n > 0), key=lambda p: (-p[1], p[0]))
            got = await trending.top("all", window, MAX_LIMIT)
            assert got == want[:MAX_LIMIT], (since, window)


async def test_a_day_window_merges_a_few_dozen_sets_through_the_reader(
    http: httpx.AsyncClient, redis: Redis
) -> None:
    now = int(time.time()) // 60
    await redis.set(TREND_ROLLUPS_SINCE_KEY, now - 2 * 24 * 60)
    for minute in range(now - 24 * 60 + 1, now + 1, 7):
        for key in trend_keys("all", minute):
            await redis.zincrby(key, 1, f"t{minute % 50}")
    # Every command into the slow log, to see the merge the reader sends.
    logged = await redis.config_get("slowlog-log-slower-than")
    await redis.config_set("slowlog-log-slower-than", 0)
    try:
        await redis.slowlog_reset()
        response = await http.get("/v1/trending", params={"window": "24h", "limit": 100})
        entries = await redis.slowlog_get(100)
    finally:
        await redis.config_set("slowlog-log-slower-than", logged["slowlog-log-slower-than"])
    assert response.status_code == 200, response.text
    assert len(response.json()["articles"]) == 50
    commands = [bytes(e["command"]).split() for e in entries]
    # EVALSHA sha numkeys: the window's buckets and the scratch key, which is gone after.
    # (Twice the first time: refused unknown, then run once the reader has loaded it.)
    numkeys = {int(command[2]) - 1 for command in commands if command[0] == b"EVALSHA"}.pop()
    assert numkeys <= MOST_BUCKETS["24h"], f"the 24 h window merged {numkeys} sets"
    assert await redis.keys("rx:trend:*:merge") == []


async def test_a_bucket_keeps_the_articles_with_the_highest_net_deltas(raw_redis: Redis) -> None:
    """Made-up ids by the thousand cannot grow a bucket, and so a window's merge, without end;
    what a ranking of 100 needs stays."""
    script = trend_script(raw_redis)
    minute = 29_000_000
    crowd = [item for i in range(TREND_BUCKET_MAX + 50) for item in (f"made-up-{i:05d}", 1)]
    news = ["story-gain", 40, "story-loss", -3]
    for pairs in (news, crowd):
        for keys, args in trend_calls({"all": pairs}, minute, minute):
            await script(keys=list(keys), args=list(args))
    for key in trend_keys("all", minute):
        assert await raw_redis.zcard(key) == TREND_BUCKET_MAX
        assert await raw_redis.zscore(key, "story-gain") == 40
        assert await raw_redis.zscore(key, "story-loss") is None  # the lowest go first
    trending = Trending(raw_redis, ttl=0, wall_clock=lambda: minute * 60 + 59)
    top = await trending.top("all", "5m", 3)
    assert top[0] == ("story-gain", 40) and all(n == 1 for _, n in top[1:])


async def test_longer_windows_reuse_their_list_longer(raw_redis: Redis) -> None:
    now = [1000.0]
    minute = 29_000_000
    trending = Trending(raw_redis, ttl=1.0, clock=lambda: now[0], wall_clock=lambda: minute * 60)
    key = trend_key("all", minute)
    await raw_redis.zincrby(key, 1, "first")
    for window in WINDOW_MINUTES:
        assert await trending.top("all", window, 10) == [("first", 1)]
    await raw_redis.zincrby(key, 5, "second")
    # After a second and a half: 5 min merged again; 1 h (2.5 s) and 24 h (60 s) reused.
    now[0] += 1.5
    assert [a for a, _ in await trending.top("all", "5m", 10)] == ["second", "first"]
    assert [a for a, _ in await trending.top("all", "1h", 10)] == ["first"]
    now[0] += 1.5
    assert [a for a, _ in await trending.top("all", "1h", 10)] == ["second", "first"]
    assert [a for a, _ in await trending.top("all", "24h", 10)] == ["first"]
    now[0] += 60
    assert [a for a, _ in await trending.top("all", "24h", 10)] == ["second", "first"]


async def test_a_full_redis_still_serves_trending(http: httpx.AsyncClient, redis: Redis) -> None:
    """At maxmemory with noeviction Redis refuses writes, and the votes wait in the log; the
    window's merge writes only a key that it deletes in the same call, so trending is read
    on, as the counts are."""
    now = int(time.time()) // 60
    for key in trend_keys("all", now):
        await redis.zincrby(key, 3, "story")
    used = int((await redis.info("memory"))["used_memory"])
    await redis.config_set("maxmemory", used // 2)
    try:
        with pytest.raises(OutOfMemoryError):
            await redis.set("rx:probe", 1)
        response = await http.get("/v1/trending", params={"window": "1h"})
        tally = await http.get("/v1/articles/story/reactions")
    finally:
        await redis.config_set("maxmemory", 0)
    assert response.status_code == 200, response.text
    assert response.json()["articles"][0]["article_id"] == "story"
    assert tally.status_code == 200, tally.text
