"""Nobody can freeze a reader's vote with a clock: a client_ts further ahead of the server's
clock than REACTIONS_CLIENT_CLOCK_SKEW_MS counts as that bound, whoever produced it, and a
reader frozen before the bound existed (a client_ts of 2^53) is unfrozen. A clear carries the
client's clock too, and is ordered with the sets by it."""

from __future__ import annotations

import time
import uuid
from typing import Any

import orjson
from redis.asyncio import Redis

from deploy.local.client import MintedTokens, VoteClient
from deploy.local.kafka import KafkaBroker
from shared.events import MAX_CLIENT_TS, ReactionEvent, partition_for
from shared.tallies import parse_reader_state, readers_key
from tests.aggregator.view import PARTITIONS, Send, counts, run_command, settled
from tests.support import ServiceFactory, read_topic, wait_until

SKEW_MS = 1000
SMALL_SKEW = {"REACTIONS_CLIENT_CLOCK_SKEW_MS": str(SKEW_MS)}


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _event(article: str, reaction: str, ts: int, client_ts: int) -> ReactionEvent:
    return ReactionEvent(str(uuid.uuid4()), "set", article, "u1", reaction, ts, client_ts)


async def _stored(redis: Redis, article: str, user: str) -> tuple[str, int | None]:
    state = parse_reader_state(await redis.hget(readers_key(article), user))
    assert state is not None, f"{user} has no state on {article}"
    return state.reaction, state.client_ts


async def test_a_future_client_ts_from_another_producer_counts_as_the_bound(
    start_service: ServiceFactory, producer: Any, redis: Redis, kafka: KafkaBroker, topic: str
) -> None:
    start_service("aggregator", env=SMALL_SKEW)
    t = _now_ms() - 60_000  # server clocks a minute ago, so that the events are all past
    # Produced straight onto the topic (another producer, or a record from before ingest
    # bounded client_ts): the aggregator bounds it by its server ts at decode.
    events = [
        _event("clock-1", "love", t, MAX_CLIENT_TS),
        _event("clock-1", "sad", t + 500, t + 600),  # within the window: older than the bound
        _event("clock-1", "wow", t + 1500, t + 1500),  # past it: a later click applies
    ]
    for event in events:
        partition = partition_for(event.article_id, PARTITIONS)
        await producer.send_and_wait(topic, event.encode(), key=event.key(), partition=partition)
    await settled(redis, kafka.bootstrap, topic)
    assert await counts(redis, "clock-1") == {"wow": 1}
    assert await _stored(redis, "clock-1", "u1") == ("wow", t + 1500)


async def test_ingest_bounds_a_future_client_ts_and_the_next_click_applies_after_it(
    start_service: ServiceFactory,
    tokens: MintedTokens,
    redis: Redis,
    kafka: KafkaBroker,
    topic: str,
) -> None:
    ingest = start_service("ingest", env=SMALL_SKEW)
    start_service("aggregator", env=SMALL_SKEW)
    async with VoteClient(ingest.url, tokens=tokens) as votes:
        ten_days = 10 * 86_400_000
        future = await votes.set("clock-2", "a.u1", "love", _now_ms() + ten_days)
        assert future.status_code == 202, future.text
        [record] = await read_topic(kafka.bootstrap, topic, at_least=1)
        assert record.value is not None
        stored = orjson.loads(record.value)
        assert stored["client_ts"] == stored["ts"] + SKEW_MS, "ingest stored the bound"
        # Once the reader's clock has passed the bound, their click is newer and applies.
        wait_until(lambda: _now_ms() > stored["client_ts"], what="the bound to pass")
        later = await votes.set("clock-2", "a.u1", "wow", _now_ms())
        assert later.status_code == 202, later.text
    await settled(redis, kafka.bootstrap, topic)
    assert await counts(redis, "clock-2") == {"wow": 1}


async def test_erase_reader_unfreezes_a_reader_stored_at_2_to_the_53(
    start_service: ServiceFactory,
    send: Send,
    redis: Redis,
    kafka: KafkaBroker,
    topic: str,
    stack_env: dict[str, str],
) -> None:
    start_service("aggregator", env=SMALL_SKEW)
    await send("set", "frozen-1", "eve", "love", client_ts=5_000)
    await settled(redis, kafka.bootstrap, topic)
    # The state a vote with client_ts 2^53 left before client clocks were bounded: there,
    # `previous + 1` rounds back to 2^53, so even an erase could not move it on.
    await redis.hset(readers_key("frozen-1"), "eve", f"love|{MAX_CLIENT_TS}")

    status, output = await run_command({**stack_env, **SMALL_SKEW}, "erase-reader", "eve")
    assert status == 0, output
    await settled(redis, kafka.bootstrap, topic)
    assert await counts(redis, "frozen-1") == {}
    reaction, client_ts = await _stored(redis, "frozen-1", "eve")
    assert reaction == "" and client_ts is not None
    assert client_ts <= _now_ms() + SKEW_MS + 1, "the erase stored the bound, plus one"

    # The reader's next click, once their clock has passed that, applies.
    wait_until(lambda: _now_ms() > client_ts, what="the erase's bound to pass")
    await send("set", "frozen-1", "eve", "wow", client_ts=_now_ms())
    await settled(redis, kafka.bootstrap, topic)
    assert await counts(redis, "frozen-1") == {"wow": 1}


async def test_a_clear_carries_the_client_clock_and_is_ordered_with_the_sets(
    start_service: ServiceFactory,
    tokens: MintedTokens,
    redis: Redis,
    kafka: KafkaBroker,
    topic: str,
) -> None:
    ingest = start_service("ingest")
    start_service("aggregator")
    async with VoteClient(ingest.url, tokens=tokens) as votes:

        async def vote(reaction: str | None, client_ts: int) -> None:
            response = await votes.vote(tokens.token("a.u1"), "clock-3", reaction, client_ts)
            assert response.status_code == 202, response.text

        await vote("love", 1_000)
        await vote(None, 900)  # a clear older than the stored set: stale
        await settled(redis, kafka.bootstrap, topic)
        assert await counts(redis, "clock-3") == {"love": 1}
        await vote(None, 1_100)  # a newer clear applies
        await vote("wow", 1_050)  # and a set older than it is stale
    await settled(redis, kafka.bootstrap, topic)
    assert await counts(redis, "clock-3") == {}
    assert await _stored(redis, "clock-3", "a.u1") == ("", 1_100)
    clears = [
        orjson.loads(r.value)
        for r in await read_topic(kafka.bootstrap, topic)
        if r.value and orjson.loads(r.value)["op"] == "clear"
    ]
    assert {c["client_ts"] for c in clears} >= {900, 1_100}, "clears keep their client_ts"
