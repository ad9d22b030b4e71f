"""The live feed's fan-out: one frame per change burst per article, shared by every stream
that carries the article; outboxes keep the latest frame per article; its one subscription,
kept while idle and restored when its connection dies, even silently."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from redis.asyncio import Redis

from deploy.local.redis import RedisServer
from services.reader.cache import Counts, TallyCache
from services.reader.live import SSE_COALESCED, ChangeFeed, Outbox, tally_frame
from shared.tallies import READS, connect_redis
from tests.support import TcpRelay, eventually


def coalesced() -> float:
    return SSE_COALESCED._value.get()


async def subscribers(redis: Redis) -> int:
    """How many connections listen on the change channel."""
    counts = await redis.pubsub_numsub("rx:changed")
    return int(counts[0][1])


async def test_outbox_keeps_only_the_latest_frame_of_each_article() -> None:
    outbox = Outbox(("a", "b"), "client")
    before = coalesced()
    for i in range(1000):
        outbox.put("a", b"%d;" % i)
    outbox.put("b", b"b;")
    await outbox.wait()
    assert outbox.take() == b"999;b;"  # one write: the latest of each article
    assert coalesced() - before == 999
    waiter = asyncio.create_task(outbox.wait())
    await asyncio.sleep(0)
    assert not waiter.done()  # nothing new: the slow client waits, nothing piles up
    outbox.put("b", b"next;")
    await waiter
    assert outbox.take() == b"next;"


async def next_write(outbox: Outbox) -> bytes:
    await outbox.wait()
    return outbox.take()


class Renderer:
    def __init__(self) -> None:
        self.version = 0
        self.calls: list[str] = []

    async def __call__(self, article_id: str) -> bytes:
        self.calls.append(article_id)
        return f"{article_id}:{self.version}".encode()


async def no_load(ids: Sequence[str]) -> list[Counts]:
    return [(0,) for _ in ids]


async def test_a_burst_of_changes_is_sent_once_and_others_are_untouched(redis: Redis) -> None:
    cache = TallyCache(no_load, ttl=0.5, max_entries=10)
    render = Renderer()
    # An hour between sends: only the first send of the burst can happen during the test.
    feed = ChangeFeed(redis, cache, render, interval=3600)
    try:
        fast = [feed.add(["viral"]) for _ in range(2)]
        page = feed.add(["quiet", "viral"])  # a page's stream carries both
        quiet = feed.add(["quiet"])
        before = coalesced()
        render.version = 1
        for _ in range(20):  # one burst, delivered before the feed's send runs
            feed.on_changed(["viral", "elsewhere"])
        frame = tally_frame(b"viral:1")
        writes = await asyncio.gather(*(next_write(o) for o in [*fast, page]))
        assert writes == [frame] * 3
        assert writes[0] is writes[2]  # the same bytes for every stream, encoded once
        assert render.calls == ["viral"]  # one read for all three streams
        assert coalesced() - before == 19
        render.version = 2
        feed.on_changed(["viral"])  # within the interval: waits for the next slot
        feed.on_changed(["viral"])  # and merges into that send
        assert render.calls == ["viral"]
        assert coalesced() - before == 20
        assert not quiet.pending and not page.pending
    finally:
        for outbox in [*fast, page, quiet]:
            feed.remove(outbox)
            feed.remove(outbox)  # safe twice
        assert feed.clients == 0
        await feed.close()


async def test_streams_connecting_share_the_current_frame(redis: Redis) -> None:
    cache = TallyCache(no_load, ttl=0.5, max_entries=10)
    render = Renderer()
    feed = ChangeFeed(redis, cache, render, interval=0.25)
    first = feed.add(["a1", "a2"])
    try:
        await feed.wait_subscribed(10)
        one = await feed.current_frames(["a1", "a2"])
        two = await feed.current_frames(["a2", "a1"])
        assert one == [tally_frame(b"a1:0"), tally_frame(b"a2:0")]
        assert two[0] is one[1] and render.calls == ["a1", "a2"]  # kept, not re-rendered
        render.version = 1
        feed.on_changed(["a1"])  # a change makes the kept frame stale
        assert await feed.current_frames(["a1"]) == [tally_frame(b"a1:1")]
    finally:
        feed.remove(first)
        await feed.close()


async def test_changes_invalidate_the_cache(redis: Redis) -> None:
    loads: list[list[str]] = []

    async def load(ids: Sequence[str]) -> list[Counts]:
        loads.append(list(ids))
        return [(len(loads),) for _ in ids]

    cache = TallyCache(load, ttl=0.5, max_entries=10)
    feed = ChangeFeed(redis, cache, Renderer(), interval=0.25)
    assert await cache.get_many(["a"]) == [(1,)]
    feed.on_changed(["a"])
    assert await cache.get_many(["a"]) == [(2,)]
    await feed.close()


async def test_subscription_lives_only_while_clients_are_connected(redis: Redis) -> None:
    cache = TallyCache(no_load, ttl=0.5, max_entries=10)
    render = Renderer()
    feed = ChangeFeed(redis, cache, render, interval=0.25)

    outbox = feed.add(["a1"])
    await feed.wait_subscribed(10)
    await eventually(lambda: subscribers(redis), lambda n: n == 1, what="one subscription")
    second = feed.add(["a2"])
    assert await subscribers(redis) == 1  # one per process, not per client
    await redis.publish("rx:changed", '["a1","zz"]')
    assert await asyncio.wait_for(next_write(outbox), 30) == tally_frame(b"a1:0")
    await redis.publish("rx:changed", "not json")  # ignored, the feed keeps going
    await redis.publish("rx:changed", '["a2"]')
    assert await asyncio.wait_for(next_write(second), 30) == tally_frame(b"a2:0")
    feed.remove(outbox)
    feed.remove(second)
    await eventually(lambda: subscribers(redis), lambda n: n == 0, what="the subscription to end")
    await feed.close()


async def test_a_lost_subscription_is_restored_and_clients_resynced(redis: Redis) -> None:
    cache = TallyCache(no_load, ttl=0.5, max_entries=10)
    render = Renderer()
    feed = ChangeFeed(redis, cache, render, interval=0.25)

    outbox = feed.add(["a1"])
    try:
        await eventually(lambda: subscribers(redis), lambda n: n == 1, what="the subscription")
        render.version = 1
        # Changes published while the connection is down are lost; the feed must resync.
        await redis.client_kill_filter(_type="pubsub")
        assert await asyncio.wait_for(next_write(outbox), 30) == tally_frame(b"a1:1")
        await eventually(
            lambda: subscribers(redis), lambda n: n == 1, what="the subscription to return"
        )
        render.version = 2
        await redis.publish("rx:changed", '["a1"]')
        assert await asyncio.wait_for(next_write(outbox), 30) == tally_frame(b"a1:2")
    finally:
        feed.remove(outbox)
        await feed.close()


async def pubsub_clients(redis: Redis) -> list[str]:
    """The ids of the connections in pub/sub mode."""
    return [str(c["id"]) for c in await redis.client_list(_type="pubsub")]


async def pings(redis: Redis) -> int:
    stats = await redis.info("commandstats")
    return int(stats.get("cmdstat_ping", {}).get("calls", 0))


async def test_an_idle_subscription_is_pinged_and_kept(redis: Redis) -> None:
    cache = TallyCache(no_load, ttl=0.5, max_entries=10)
    feed = ChangeFeed(redis, cache, Renderer(), interval=0.25, heartbeat_s=0.2)
    outbox = feed.add(["a1"])
    try:
        await feed.wait_subscribed(10)
        [subscription] = await pubsub_clients(redis)
        before = await pings(redis)
        # A quiet channel for several heartbeats: each ping is answered, nothing reconnects.
        await eventually(lambda: pings(redis), lambda n: n >= before + 5, what="heartbeats")
        assert await pubsub_clients(redis) == [subscription]
        await redis.publish("rx:changed", '["a1"]')
        assert await asyncio.wait_for(next_write(outbox), 10) == tally_frame(b"a1:0")
    finally:
        feed.remove(outbox)
        await feed.close()


async def test_a_silently_dropped_subscription_is_noticed_and_restored(
    redis: Redis, redis_server: RedisServer
) -> None:
    relay = await TcpRelay(redis_server.port).start()
    through_relay = connect_redis(f"redis://127.0.0.1:{relay.port}/0", READS)
    cache = TallyCache(no_load, ttl=0.5, max_entries=10)
    render = Renderer()
    feed = ChangeFeed(through_relay, cache, render, interval=0.25, heartbeat_s=0.5)
    outbox = feed.add(["a1"])
    try:
        await feed.wait_subscribed(10)
        await redis.publish("rx:changed", '["a1"]')
        assert await asyncio.wait_for(next_write(outbox), 10) == tally_frame(b"a1:0")
        # The connection goes dead without a FIN or RST: Redis still sees a subscriber and
        # nothing tells the feed. Its ping gets no answer within the heartbeat, so it
        # subscribes again on a new connection and resyncs its streams.
        relay.drop_silently()
        render.version = 1
        assert await asyncio.wait_for(next_write(outbox), 10) == tally_frame(b"a1:1")
        render.version = 2
        await redis.publish("rx:changed", '["a1"]')
        assert await asyncio.wait_for(next_write(outbox), 10) == tally_frame(b"a1:2")
    finally:
        feed.remove(outbox)
        await feed.close()
        await through_relay.aclose()
        await relay.close()
