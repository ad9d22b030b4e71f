"""One multiplexed stream per page, `GET /v1/stream?ids=`, against a real reader process and
Redis: changes are written and announced the way the aggregator does (counts, then a
PUBLISH on rx:changed), so each test controls exactly what changed and when."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
from redis.asyncio import Redis

from deploy.local.services import Service
from shared.tallies import CHANGES_CHANNEL, counts_key
from tests.support import ServiceFactory, assert_error, eventually, metric

TIMEOUT = httpx.Timeout(10, read=60)


@dataclass
class Events:
    """What one open stream has received so far: each tally with its arrival time."""

    tallies: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    comments: int = 0
    retry: int | None = None
    ended: bool = False

    def of(self, article: str) -> list[dict[str, Any]]:
        return [body for _, body in self.tallies if body["article_id"] == article]


@contextlib.asynccontextmanager
async def open_stream(
    http: httpx.AsyncClient, url: str, headers: dict[str, str] | None = None
) -> AsyncIterator[Events]:
    """Read the stream at `url` in the background while the block runs."""
    events = Events()
    async with http.stream("GET", url, headers=headers) as response:
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-store"
        assert response.headers["x-accel-buffering"] == "no"

        async def read() -> None:
            event = None
            async for line in response.aiter_lines():
                if line.startswith("event:"):
                    event = line.split(":", 1)[1].strip()
                elif line.startswith("data:") and event == "tally":
                    events.tallies.append((time.monotonic(), orjson.loads(line[5:])))
                elif line.startswith("retry:"):
                    events.retry = int(line[6:])
                elif line.startswith(":"):
                    events.comments += 1
            events.ended = True

        reader = asyncio.create_task(read())
        try:
            yield events
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader


async def change(redis: Redis, article: str, reaction: str = "love") -> None:
    """One vote more on `article`, announced as the aggregator announces a batch."""
    await redis.hincrby(counts_key(article), reaction, 1)
    await redis.publish(CHANGES_CHANNEL, orjson.dumps([article]))


async def until(events: Events, check: Any, what: str) -> None:
    async def probe() -> Events:
        return events

    await eventually(probe, lambda e: bool(check(e)), what=what)


# A keep-alive comment after half a second without a write: one that arrives proves the
# stream went quiet for that long, longer than a 250 ms coalescing window.
QUICK_PINGS = {"REACTIONS_SSE_KEEPALIVE_S": "0.5"}


async def quiet_for_a_keepalive(events: Events) -> None:
    """Until a keep-alive comes after what was received so far: nothing else was pending."""
    seen = events.comments
    await until(events, lambda e: e.comments > seen, "a keep-alive after the last tally")


def stream_url(reader: Service, ids: str) -> str:
    return f"{reader.url}/v1/stream?ids={ids}"


async def test_a_page_stream_sends_each_tally_at_connect_then_only_what_changed(
    start_service: ServiceFactory, redis: Redis
) -> None:
    reader = start_service("reader", env=QUICK_PINGS)
    await change(redis, "p2")
    async with (
        httpx.AsyncClient(timeout=TIMEOUT) as http,
        open_stream(http, stream_url(reader, "p1,p2,p3,p2,")) as events,
    ):
        await until(events, lambda e: len(e.tallies) == 3, "one tally per distinct id")
        assert [body["article_id"] for _, body in events.tallies] == ["p1", "p2", "p3"]
        assert events.of("p2")[0]["total"] == 1 and events.of("p1")[0]["total"] == 0
        assert (
            events.of("p1")[0] == (await http.get(f"{reader.url}/v1/articles/p1/reactions")).json()
        )
        assert events.retry is not None and 1000 <= events.retry <= 4000
        assert await metric(reader.url, "reactions_reader_sse_clients") == 1
        assert await metric(reader.url, "reactions_reader_sse_stream_articles_sum") == 3

        await change(redis, "p3")
        await until(events, lambda e: len(e.of("p3")) == 2, "the change of p3")
        await quiet_for_a_keepalive(events)  # a wrong extra event would have come first
        assert len(events.of("p3")) == 2 and events.of("p3")[1]["total"] == 1
        assert len(events.of("p1")) == 1 and len(events.of("p2")) == 1


async def test_a_burst_on_one_article_is_coalesced_to_four_a_second(
    start_service: ServiceFactory, redis: Redis
) -> None:
    reader = start_service("reader", env=QUICK_PINGS)
    async with (
        httpx.AsyncClient(timeout=TIMEOUT) as http,
        open_stream(http, stream_url(reader, "hot,calm")) as events,
    ):
        await until(events, lambda e: len(e.tallies) == 2, "the tallies at connect")
        started = time.monotonic()
        for i in range(100):  # 100 changes within 0.9 s
            await change(redis, "hot")
            await asyncio.sleep(max(0.0, started + (i + 1) * 0.009 - time.monotonic()))
        await until(
            events, lambda e: e.of("hot")[-1]["total"] == 100, "the last state of the burst"
        )
        await quiet_for_a_keepalive(events)  # a send still pending would have come first
        updates = events.of("hot")[1:]
        # Sent at once, then at most one per 250 ms window: ≤ 5 for a burst under a second.
        assert 2 <= len(updates) <= 5, [u["total"] for u in updates]
        assert [u["total"] for u in updates] == sorted(u["total"] for u in updates)
        assert len(events.of("calm")) == 1  # the other article of the stream: nothing sent
        times = [t for t, body in events.tallies if body["article_id"] == "hot"][1:]
        assert all(b - a >= 0.2 for a, b in itertools.pairwise(times)), times


async def test_page_streams_keep_alive_and_end_after_their_lifetime(
    start_service: ServiceFactory,
) -> None:
    reader = start_service(
        "reader",
        env={"REACTIONS_SSE_KEEPALIVE_S": "0.2", "REACTIONS_SSE_MAX_LIFETIME_S": "2"},
    )
    async with httpx.AsyncClient(timeout=TIMEOUT) as http:
        started = time.monotonic()
        async with open_stream(http, stream_url(reader, "k1,k2")) as events:
            await until(events, lambda e: e.ended, "the stream to end on its own")
        # Lifetime 2 s less up to 20 % jitter; keep-alives every 0.2 s meanwhile.
        assert 1.5 <= time.monotonic() - started < 10
        assert events.comments >= 3
        assert len(events.tallies) == 2


async def test_page_stream_ids_are_validated_like_the_bulk_read(
    start_service: ServiceFactory,
) -> None:
    reader = start_service("reader")
    async with httpx.AsyncClient(timeout=10) as http:
        assert_error(await http.get(f"{reader.url}/v1/stream?ids=,"), 422, "invalid_ids")
        assert_error(await http.get(f"{reader.url}/v1/stream"), 422, "invalid_request")
        many = ",".join(f"a{i}" for i in range(101))
        assert_error(await http.get(stream_url(reader, many)), 422, "too_many_ids")
        assert_error(
            await http.get(stream_url(reader, "ok,no%20spaces")), 422, "invalid_article_id"
        )
        assert await metric(reader.url, "reactions_reader_sse_clients") == 0


async def test_stream_caps_per_client_behind_a_trusted_proxy_and_per_process(
    start_service: ServiceFactory,
) -> None:
    reader = start_service(
        "reader",
        env={
            "REACTIONS_SSE_MAX_STREAMS_PER_CLIENT": "2",
            "REACTIONS_SSE_MAX_CLIENTS": "3",
            "REACTIONS_TRUSTED_PROXIES": "127.0.0.0/8",
        },
    )
    one = {"X-Forwarded-For": "203.0.113.5"}
    # A hop the client wrote itself, left of what the proxy saw, is not believed.
    one_spoofed = {"X-Forwarded-For": "198.51.100.9, 203.0.113.5"}
    other = {"X-Forwarded-For": "203.0.113.6"}
    url = stream_url(reader, "c1")
    async with (
        httpx.AsyncClient(timeout=TIMEOUT) as http,
        open_stream(http, url, one),
        open_stream(http, url, one_spoofed),
    ):
        refused = await http.get(url, headers=one)
        assert_error(refused, 429, "too_many_client_streams")
        assert int(refused.headers["retry-after"]) > 0
        async with open_stream(http, url, other):
            full = await http.get(url, headers={"X-Forwarded-For": "203.0.113.7"})
            assert_error(full, 503, "too_many_streams")
            assert int(full.headers["retry-after"]) > 0
        reasons = {
            reason: await metric(
                reader.url, "reactions_reader_sse_refused_total", {"reason": reason}
            )
            for reason in ("per_client", "max_clients")
        }
        assert reasons == {"per_client": 1, "max_clients": 1}

    async def open_streams() -> float:
        return await metric(reader.url, "reactions_reader_sse_clients")

    await eventually(open_streams, lambda n: n == 0, what="every stream to be released")


async def test_an_untrusted_peer_is_capped_by_its_own_address(
    start_service: ServiceFactory,
) -> None:
    reader = start_service("reader", env={"REACTIONS_SSE_MAX_STREAMS_PER_CLIENT": "1"})
    url = stream_url(reader, "c1")
    async with (
        httpx.AsyncClient(timeout=TIMEOUT) as http,
        open_stream(http, url, {"X-Forwarded-For": "203.0.113.5"}),
    ):
        # No trusted proxies: the forwarded address is ignored, the peer is the client.
        refused = await http.get(url, headers={"X-Forwarded-For": "203.0.113.6"})
        assert_error(refused, 429, "too_many_client_streams")


async def test_stopping_the_reader_ends_open_streams_cleanly(
    start_service: ServiceFactory,
) -> None:
    reader = start_service("reader")
    async with (
        httpx.AsyncClient(timeout=TIMEOUT) as http,
        open_stream(http, stream_url(reader, "s1,s2")) as events,
    ):
        await until(events, lambda e: len(e.tallies) == 2, "the tallies at connect")
        started = time.monotonic()
        await asyncio.to_thread(reader.stop)
        await until(events, lambda e: e.ended, "the stream to end")
        # Ended by the reader, not cut off after uvicorn's 10 s graceful-shutdown timeout.
        assert time.monotonic() - started < 5
    log = reader.process.log_path.read_text()
    assert "Exception in ASGI application" not in log
    assert "Cancel" not in log
