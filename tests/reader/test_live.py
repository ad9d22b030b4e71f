"""Live tallies over SSE through the real pipeline: ingest → Kafka → aggregator → reader."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson

from deploy.local.client import MintedTokens, VoteClient
from deploy.local.services import Service
from tests.support import ServiceFactory, assert_error, eventually, metric


async def sse_lines(response: httpx.Response) -> AsyncIterator[str]:
    async for line in response.aiter_lines():
        yield line


async def next_tally(lines: AsyncIterator[str]) -> dict[str, Any]:
    """The data of the next `event: tally` on the stream."""
    event = None
    async for line in lines:
        if line.startswith("event:"):
            event = line.split(":", 1)[1].strip()
        elif line.startswith("data:") and event == "tally":
            body: dict[str, Any] = orjson.loads(line.split(":", 1)[1])
            return body
    raise AssertionError("the stream ended before a tally")


async def test_stream_sends_the_tally_at_connect_and_on_every_change(
    pipeline: tuple[Service, Service], tokens: MintedTokens
) -> None:
    ingest, reader = pipeline
    stream_url = f"{reader.url}/v1/articles/live-1/reactions/stream"
    async with httpx.AsyncClient(timeout=httpx.Timeout(10, read=60)) as http:
        votes = VoteClient(ingest.url, http=http, tokens=tokens)
        async with http.stream("GET", stream_url) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            assert response.headers["x-accel-buffering"] == "no"
            assert response.headers["cache-control"] == "no-store"
            lines = sse_lines(response)
            first = await next_tally(lines)
            assert first == {
                "article_id": "live-1",
                "counts": dict.fromkeys(
                    ["like", "dislike", "love", "funny", "angry", "sad", "wow"], 0
                ),
                "total": 0,
                "seq": -1,
            }
            assert await metric(reader.url, "reactions_reader_sse_clients") == 1

            put = await votes.set("live-1", "a.u1", "love")
            assert put.status_code == 202
            tally = await asyncio.wait_for(next_tally(lines), 60)
            assert tally["counts"]["love"] == 1 and tally["total"] == 1
            assert tally["seq"] == put.json()["seq"]  # the tally that includes the vote

            moved = await votes.set("live-1", "a.u1", "wow")
            tally = await asyncio.wait_for(next_tally(lines), 60)
            # Tallies may be coalesced, but the latest state always arrives.
            while tally["counts"]["wow"] != 1:
                assert tally["seq"] < moved.json()["seq"]  # not yet including the move
                tally = await asyncio.wait_for(next_tally(lines), 60)
            assert tally["counts"]["love"] == 0 and tally["total"] == 1
            assert tally["seq"] >= moved.json()["seq"]

        assert await metric(reader.url, "reactions_reader_sse_messages_total") >= 3

        async def clients() -> float:
            return await metric(reader.url, "reactions_reader_sse_clients")

        await eventually(clients, lambda n: n == 0, what="the stream to be released")


async def test_stream_keeps_alive_and_ends_after_its_lifetime(
    start_service: ServiceFactory,
) -> None:
    reader = start_service(
        "reader",
        env={"REACTIONS_SSE_KEEPALIVE_S": "0.2", "REACTIONS_SSE_MAX_LIFETIME_S": "2"},
    )
    async with (
        httpx.AsyncClient(timeout=httpx.Timeout(10, read=60)) as http,
        http.stream("GET", f"{reader.url}/v1/articles/a1/reactions/stream") as response,
    ):
        lines = [line async for line in response.aiter_lines()]
    # The stream ended on its own (the client did not close it), with keep-alive comments.
    assert any(line.startswith(":") for line in lines), lines
    assert any(line.startswith("retry:") for line in lines)
    assert sum(line == "event: tally" for line in lines) == 1


async def test_stream_rejects_a_bad_article_id(start_service: ServiceFactory) -> None:
    reader = start_service("reader")
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.get(f"{reader.url}/v1/articles/no%20spaces/reactions/stream")
        assert_error(response, 422, "invalid_article_id")
