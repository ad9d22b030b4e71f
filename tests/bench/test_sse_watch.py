"""The SSE side of the latency watcher, against a minimal stand-in that streams tallies the
way the contract describes (`event: tally`, the GET's JSON as data)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import orjson
import pytest
from aiohttp import web

from bench.latency import TallyWatch, detect_method, watch_sse
from deploy.local.process import free_port


@pytest.fixture
async def streaming_reader() -> AsyncIterator[str]:
    """A tiny server: /…/reactions/stream sends totals 1, 2, 3 as `event: tally`."""

    async def stream(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for total in (1, 2, 3):
            body = {"article_id": request.match_info["article"], "counts": {}, "total": total}
            await response.write(b"event: tally\ndata: " + orjson.dumps(body) + b"\n\n")
            await asyncio.sleep(0.01)
        return response

    app = web.Application()
    app.router.add_get("/v1/articles/{article}/reactions/stream", stream)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def test_sse_stream_is_detected_and_followed(streaming_reader: str) -> None:
    seen: list[float] = []
    watch = TallyWatch(lambda acked, _seen: seen.append(acked))
    watch.expect("a1", 3, 7.0)
    ready = asyncio.Event()
    async with aiohttp.ClientSession() as session:
        assert await detect_method(session, streaming_reader, "a1") == "sse"
        await asyncio.wait_for(watch_sse(session, streaming_reader, "a1", watch, ready), 30)
    assert ready.is_set()
    assert watch.totals["a1"] == 3
    assert seen == [7.0]


async def test_a_reader_without_stream_is_polled(streaming_reader: str) -> None:
    async with aiohttp.ClientSession() as session:
        missing = f"{streaming_reader}/elsewhere"
        assert await detect_method(session, missing, "a") == "poll"
