"""The hand-written stream writer with a stalled client: it never holds up the feed or the
other streams, keeps at most the latest frame per article, and is dropped when its socket
accepts nothing for SSE_SEND_TIMEOUT_S. The ASGI `send` here stalls as a server's does when
a client stops reading; the feed and Redis are real."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
from redis.asyncio import Redis
from starlette.types import Message

from services.reader import sse
from services.reader.cache import Counts, TallyCache
from services.reader.live import ChangeFeed, tally_frame
from services.reader.sse import LiveStream
from shared.clients import client_network as client_key
from tests.support import eventually


async def no_load(ids: Sequence[str]) -> list[Counts]:
    return [(0,) for _ in ids]


class Client:
    """An ASGI peer: records the body chunks written, or stalls every write when `stalled`."""

    def __init__(self, *, stalled: bool = False) -> None:
        self.stalled = stalled
        self.chunks: list[bytes] = []
        self.gone = asyncio.Event()

    async def send(self, message: Message) -> None:
        if self.stalled:
            await asyncio.Event().wait()  # the socket never drains
        self.chunks.append(message.get("body", b""))

    async def receive(self) -> Message:
        await self.gone.wait()
        return {"type": "http.disconnect"}


async def test_a_stalled_client_holds_up_nobody_and_is_dropped(
    redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sse, "SSE_SEND_TIMEOUT_S", 0.5)
    versions = [0]

    async def render(article_id: str) -> bytes:
        return f"{article_id}:{versions[-1]}".encode()

    feed = ChangeFeed(redis, TallyCache(no_load, ttl=0.5, max_entries=10), render, interval=0)
    slow, fast = Client(stalled=True), Client()
    streams = [
        LiveStream(feed, feed.add(["a", "b"]), lifetime=60, keepalive=30),
        LiveStream(feed, feed.add(["a", "b"]), lifetime=60, keepalive=30),
    ]
    slow_task = asyncio.create_task(streams[0].run(slow.receive, slow.send))
    fast_task = asyncio.create_task(streams[1].run(fast.receive, fast.send))
    try:
        await feed.wait_subscribed(10)
        for version in range(1, 51):
            versions.append(version)
            feed.on_changed(["a", "b"])
            await asyncio.sleep(0.002)

        async def fast_saw() -> bytes:
            return b"".join(fast.chunks)

        last = tally_frame(b"a:50")
        await eventually(fast_saw, lambda seen: last in seen, what="the fast client's frames")
        # The stalled stream keeps only the latest unsent frame of each article.
        assert len(streams[0].outbox.pending) <= 2
        await asyncio.wait_for(slow_task, 10)  # dropped after the send timeout
        assert feed.clients == 1  # its outbox left the feed; the fast one stays
        assert not fast_task.done()
    finally:
        fast.gone.set()
        await asyncio.wait_for(fast_task, 10)
        assert feed.clients == 0
        await feed.close()


async def test_a_client_that_goes_away_is_noticed_and_released(
    redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sse, "DISCONNECT_CHECK_S", 0.05)

    async def render(article_id: str) -> bytes:
        return article_id.encode()

    feed = ChangeFeed(redis, TallyCache(no_load, ttl=0.5, max_entries=10), render, interval=0)
    client = Client()
    stream = LiveStream(feed, feed.add(["a"]), lifetime=60, keepalive=30)
    task = asyncio.create_task(stream.run(client.receive, client.send))
    try:
        await asyncio.sleep(0.2)
        assert not task.done()
        client.gone.set()
        await asyncio.wait_for(task, 10)
        assert feed.clients == 0
    finally:
        await feed.close()


def test_the_per_client_cap_counts_ipv4_addresses_and_ipv6_networks() -> None:
    assert client_key("203.0.113.5") == "203.0.113.5"
    assert client_key("2001:db8:1:2:aaaa::1") == client_key("2001:db8:1:2:bbbb::9")
    assert client_key("2001:db8:1:2::1") != client_key("2001:db8:1:3::1")
    assert client_key("::ffff:203.0.113.5") == "203.0.113.5"
