"""While the view is rebuilt from the log (Redis lost its data), the reader answers 503
`rebuilding` and pushes nothing: never a count that is only part of the log, which the edge
and browsers would keep. Driven through a real reader on a real Redis, the aggregator's part
(epoch marker, replay targets, change notices) written as it writes them."""

from __future__ import annotations

import asyncio

import httpx
import orjson
from redis.asyncio import Redis

from deploy.local.client import MintedTokens, bearer
from deploy.local.services import Service
from shared.tallies import CHANGES_CHANNEL, counts_key, epoch_key, replay_key
from tests.reader.test_live import next_tally, sse_lines
from tests.support import ServiceFactory, assert_error, eventually, mark_view, metric

ARTICLE = "r1"


async def rebuilding(reader: Service) -> float:
    return await metric(reader.url, "reactions_reader_view_rebuilding")


async def test_a_lost_view_is_answered_503_until_its_replay_ends(
    start_service: ServiceFactory, redis: Redis, topic: str, tokens: MintedTokens
) -> None:
    await redis.set(epoch_key(topic), "epoch-1")
    await redis.hset(counts_key(ARTICLE), mapping={"love": 5, "@fence": "0:41"})
    # Without the micro-cache: its tally from before the loss is a right one, and it would
    # answer the first read after it.
    reader = start_service("reader", env={"REACTIONS_READER_CACHE_TTL_MS": "0"})
    token = tokens.token("a.rb-reader")
    reads = {
        "one": f"/v1/articles/{ARTICLE}/reactions",
        "bulk": f"/v1/reactions?ids={ARTICLE},r2",
        "page stream": f"/v1/stream?ids={ARTICLE}",
        "fragment": f"/v1/articles/{ARTICLE}/reactions.html",
    }
    async with httpx.AsyncClient(base_url=reader.url, timeout=10) as http:
        one = await http.get(reads["one"])
        assert one.status_code == 200 and one.json()["counts"]["love"] == 5

        # Redis restarts empty; no aggregator has noticed yet.
        await redis.flushall()
        for name, path in reads.items():
            body = assert_error(await http.get(path), 503, "rebuilding")
            assert "rebuilt" in body["error"]["message"], name
        refused = await http.get(reads["one"])
        assert refused.headers["retry-after"] == "5"
        assert refused.headers["cache-control"] == "no-store"  # no cache keeps the refusal
        mine = await http.get(f"/v1/me/reactions?ids={ARTICLE}", headers=bearer(token))
        assert_error(mine, 503, "rebuilding")
        assert await rebuilding(reader) == 1

        # An aggregator noticed: a new epoch, and the partition's replay under way.
        await redis.set(epoch_key(topic), "epoch-2")
        await redis.hset(replay_key(topic), "0", 42)
        await redis.hset(counts_key(ARTICLE), mapping={"love": 2, "@fence": "0:20"})
        assert_error(await http.get(reads["one"]), 503, "rebuilding")

        # The replay passed the target: the counts are whole again.
        await redis.hset(counts_key(ARTICLE), mapping={"love": 5, "@fence": "0:41"})
        await redis.hdel(replay_key(topic), "0")
        one = await http.get(reads["one"])
        assert one.status_code == 200 and one.json()["counts"]["love"] == 5
        assert await rebuilding(reader) == 0


async def test_a_redis_no_aggregator_has_marked_is_not_served_as_counts(
    start_service: ServiceFactory, redis: Redis, topic: str
) -> None:
    """A reader (re)started on a Redis without a marker cannot tell a new deployment from a
    lost data set that no aggregator has noticed yet: it answers 503 until one has marked
    it, and serves as soon as one has."""
    await redis.flushall()
    await redis.hset(counts_key(ARTICLE), mapping={"love": 2, "@fence": "0:20"})
    reader = start_service("reader", env={"REACTIONS_READER_CACHE_TTL_MS": "0"})
    async with httpx.AsyncClient(base_url=reader.url, timeout=10) as http:
        assert_error(await http.get(f"/v1/articles/{ARTICLE}/reactions"), 503, "rebuilding")
        assert await rebuilding(reader) == 1
        await mark_view(redis, topic)
        one = await http.get(f"/v1/articles/{ARTICLE}/reactions")
        assert one.status_code == 200 and one.json()["counts"]["love"] == 2
        assert await rebuilding(reader) == 0


async def test_streams_hold_the_replay_and_get_every_tally_once_it_ends(
    start_service: ServiceFactory, redis: Redis, topic: str
) -> None:
    """A stream open through the loss keeps its last good tally while the replay's notices
    come, and gets the whole tally when the replay ends (no notice comes then)."""
    await redis.set(epoch_key(topic), "epoch-1")
    await redis.hset(counts_key(ARTICLE), mapping={"love": 5, "@fence": "0:41"})
    reader = start_service("reader")
    url = f"{reader.url}/v1/stream?ids={ARTICLE}"
    async with (
        httpx.AsyncClient(timeout=httpx.Timeout(10, read=60)) as http,
        http.stream("GET", url) as response,
    ):
        lines = sse_lines(response)
        assert (await next_tally(lines))["counts"]["love"] == 5

        # Lost, then replayed in part, as one aggregator batch announces it.
        await redis.flushall()
        await redis.set(epoch_key(topic), "epoch-2")
        await redis.hset(replay_key(topic), "0", 42)
        await redis.hset(counts_key(ARTICLE), mapping={"love": 2, "@fence": "0:20"})
        await redis.publish(CHANGES_CHANNEL, orjson.dumps([ARTICLE]))
        # The reader read the part (to push it) and found the replay under way.
        await eventually(lambda: rebuilding(reader), lambda n: n == 1, what="the rebuild seen")

        await redis.hset(counts_key(ARTICLE), mapping={"love": 6, "@fence": "0:43"})
        await redis.hdel(replay_key(topic), "0")
        tally = await asyncio.wait_for(next_tally(lines), 30)
        assert tally["counts"]["love"] == 6 and tally["seq"] == 43
