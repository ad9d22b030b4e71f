"""The fan-out ceiling of this machine: a minimal SSE broadcaster on a plain asyncio protocol
(uvloop, no framework, no ASGI). It answers `GET /v1/stream?ids=…` (and the per-article
path) with the same frames as the reader — the plain GET's JSON in `event: tally`, at
connect and on change, at most 4 a second per article — and follows `rx:changed` the same
way, so the SSE scenario can drive both identically and compare what they deliver."""

from __future__ import annotations

import asyncio
import math
import os
import time
from urllib.parse import parse_qs, urlsplit

import orjson
import uvloop
from redis.asyncio import Redis

from shared.reactions import DEFAULT_TYPES
from shared.tallies import CHANGES_CHANNEL, counts_key, parse_counts

INTERVAL = 0.25
HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-store\r\n"
    b"connection: close\r\n\r\n"
)


class Broadcaster:
    """Article -> open transports, and the 4-a-second send of each changed article."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self.listeners: dict[str, set[asyncio.Transport]] = {}
        self.last: dict[str, float] = {}
        self.scheduled: set[str] = set()
        self.frames: dict[str, bytes] = {}
        self.reading = asyncio.Lock()  # one Redis read at a time, as a connect storm needs

    async def frame(self, article: str) -> bytes:
        row = await self.redis.hmget(counts_key(article), list(DEFAULT_TYPES))
        counts = parse_counts(row)
        body = orjson.dumps(
            {
                "article_id": article,
                "counts": dict(zip(DEFAULT_TYPES, counts, strict=True)),
                "total": sum(counts),
            }
        )
        return b"event: tally\ndata: " + body + b"\n\n"

    def changed(self, article: str) -> None:
        if article not in self.listeners or article in self.scheduled:
            return
        self.scheduled.add(article)
        delay = max(0.0, self.last.get(article, -math.inf) + INTERVAL - time.monotonic())
        asyncio.get_running_loop().call_later(delay, self._send, article)

    def _send(self, article: str) -> None:
        asyncio.get_running_loop().create_task(self._broadcast(article))

    async def _broadcast(self, article: str) -> None:
        self.scheduled.discard(article)
        self.last[article] = time.monotonic()
        frame = self.frames[article] = await self.frame(article)
        for transport in self.listeners.get(article, ()):
            transport.write(frame)

    async def follow(self) -> None:
        pubsub = self.redis.pubsub()
        await pubsub.subscribe(CHANGES_CHANNEL)
        async for message in pubsub.listen():
            if message["type"] == "message":
                for article in orjson.loads(message["data"]):
                    self.changed(article)


class StreamProtocol(asyncio.Protocol):
    """One client: parse the request line, subscribe, send the current tallies."""

    def __init__(self, hub: Broadcaster) -> None:
        self.hub = hub
        self.articles: list[str] = []
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is a Transport

    def data_received(self, data: bytes) -> None:
        if self.articles or self.transport is None:
            return
        self.buffer += data
        if b"\r\n\r\n" not in self.buffer:
            return
        target = self.buffer.split(b" ", 2)[1].decode()
        url = urlsplit(target)
        if url.path == "/readyz":
            self.transport.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            self.transport.close()
            return
        ids = parse_qs(url.query).get("ids", [""])[0].split(",")
        if url.path.endswith("/reactions/stream"):
            ids = [url.path.split("/")[3]]
        self.articles = list(dict.fromkeys(i for i in ids if i))
        for article in self.articles:
            self.hub.listeners.setdefault(article, set()).add(self.transport)
        asyncio.get_running_loop().create_task(self._first())

    async def _first(self) -> None:
        frames = []
        async with self.hub.reading:
            for article in self.articles:
                if article not in self.hub.frames:
                    self.hub.frames[article] = await self.hub.frame(article)
                frames.append(self.hub.frames[article])
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(HEAD + b"retry: 2000\n\n" + b"".join(frames))

    def connection_lost(self, exc: Exception | None) -> None:
        for article in self.articles:
            self.hub.listeners.get(article, set()).discard(self.transport)


async def main() -> None:
    """Serve on BENCH_PORT, following BENCH_REDIS_URL's rx:changed."""
    hub = Broadcaster(Redis.from_url(os.environ["BENCH_REDIS_URL"]))
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: StreamProtocol(hub), "127.0.0.1", int(os.environ["BENCH_PORT"]), backlog=4096
    )
    async with server:
        await hub.follow()


if __name__ == "__main__":
    import resource

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    uvloop.run(main())
