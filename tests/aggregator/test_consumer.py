"""The aggregator as a real process on real Kafka and Redis: counting, notifications,
trending, dead letters, correctives, replays, rebalances and shutdown."""

from __future__ import annotations

import asyncio
import random
import signal
import time
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from redis.asyncio import Redis

from deploy.local.kafka import KafkaBroker
from shared.events import decode_event, partition_for
from shared.tallies import (
    CHANGES_CHANNEL,
    TREND_ROLLUPS_SINCE_KEY,
    TREND_TTL_SECONDS,
    epoch_key,
    position_key,
    replay_key,
    trend_bucket_key,
)
from tests.aggregator.view import PARTITIONS, Send, all_counts, counts, settled
from tests.support import ServiceFactory, eventually, metric, read_topic


async def test_counts_notifications_and_trending(
    start_service: ServiceFactory, send: Send, redis: Redis, kafka: KafkaBroker, topic: str
) -> None:
    pubsub = redis.pubsub()
    await pubsub.subscribe(CHANGES_CHANNEL)
    aggregator = start_service("aggregator")
    await send("set", "a1", "u1", "love")
    await send("set", "a1", "u2", "love")
    await send("set", "a1", "u1", "angry")  # moves u1's vote
    await send("set", "a2", "u1", "like")
    await send("set", "a2", "u1", "like")  # same reaction again: nothing changes
    await send("clear", "a3", "u9")  # clearing nothing: nothing changes
    await send("clear", "a2", "u7")
    await settled(redis, kafka.bootstrap, topic)

    assert await counts(redis, "a1") == {"love": 1, "angry": 1}
    assert await counts(redis, "a2") == {"like": 1}
    assert await counts(redis, "a3") == {}
    assert (
        await metric(aggregator.url, "reactions_aggregator_events_total", {"outcome": "noop"}) == 3
    )

    notified: set[str] = set()

    async def listen() -> set[str]:
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.5)
        if message is not None:
            notified.update(orjson.loads(message["data"]))
        return notified

    await eventually(listen, lambda n: {"a1", "a2", "a3"} <= n, what="change notifications")
    # Every batch has been published by now (positions and PUBLISH share one pipeline).
    while message := await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.2):
        notified.update(orjson.loads(message["data"]))
    # Every article whose tally changed: a3's counts did not, but its seq did (clearing
    # nothing is still the reader's latest vote, which their page waits to see applied).
    assert notified == {"a1", "a2", "a3"}
    await pubsub.aclose()

    minute = int(time.time()) // 60
    # The minute buckets, and the 5-minute and hourly rollups written with them, each hold
    # the same net deltas.
    for span in (1, 5, 60):
        net: dict[tuple[str, str], float] = {}
        for reaction in ("love", "angry", "like", "all"):
            for index in {m // span for m in range(minute - 2, minute + 1)}:
                key = trend_bucket_key(reaction, span, index)
                for article, score in await redis.zrange(key, 0, -1, withscores=True):
                    net[(reaction, article)] = net.get((reaction, article), 0) + score
                    ttl = await redis.ttl(key)
                    assert TREND_TTL_SECONDS - 120 < ttl <= TREND_TTL_SECONDS
        assert {k: v for k, v in net.items() if v} == {
            ("love", "a1"): 1,
            ("angry", "a1"): 1,
            ("like", "a2"): 1,
            ("all", "a1"): 2,
            ("all", "a2"): 1,
        }, f"buckets of {span} minutes"
    # The rollups are whole from the minute the aggregator first wrote them.
    since = int(await redis.get(TREND_ROLLUPS_SINCE_KEY))
    assert minute - 2 <= since <= minute


async def test_poison_records_go_to_the_dead_letter_topic(
    start_service: ServiceFactory,
    producer: Any,
    send: Send,
    redis: Redis,
    kafka: KafkaBroker,
    topic: str,
) -> None:
    aggregator = start_service("aggregator")
    poison = [
        (b"not json", "bad_json"),
        (b'{"v": 2, "op": "set"}', "unknown_version"),
        (
            b'{"v":1,"event_id":"e","op":"set","article_id":"a1","user_id":"u1","reaction":"1st","ts":1}',
            "bad_reaction",
        ),
        (b'{"v":1,"event_id":"e","op":"set","article_id":"a1"}', "bad_user_id"),
        (None, "tombstone"),
    ]
    partition = partition_for("a1", PARTITIONS)
    offsets = []
    for value, _ in poison:
        meta = await producer.send_and_wait(
            topic, value, key=b"a1\x1fu1", partition=partition, headers=[("trace", b"t-1")]
        )
        offsets.append(meta.offset)
    await send("set", "a1", "u1", "wow")  # the consumer keeps going
    # Settled means the batch is done: its dead letters acknowledged, its metrics counted.
    await settled(redis, kafka.bootstrap, topic)
    assert await counts(redis, "a1") == {"wow": 1}

    # The dead-letter topic is at-least-once (a retried produce may repeat a record); each
    # record names its source, so keep one per source offset.
    dead = {
        int(dict(r.headers)["source_offset"]): r
        for r in await read_topic(kafka.bootstrap, f"{topic}.dlq")
    }
    assert sorted(dead) == offsets
    for (value, reason), offset in zip(poison, offsets, strict=True):
        record = dead[offset]
        headers = dict(record.headers)
        assert record.value == value and record.key == b"a1\x1fu1"
        assert headers["reason"] == reason.encode()
        assert headers["trace"] == b"t-1"
        assert headers["source_topic"] == topic.encode()
        assert headers["source_partition"] == str(partition).encode()
        assert headers["detail"]
    assert await metric(
        aggregator.url, "reactions_aggregator_events_total", {"outcome": "dead_lettered"}
    ) == len(poison)


async def test_a_stale_event_is_ignored_and_corrected_in_the_log(
    start_service: ServiceFactory, send: Send, redis: Redis, kafka: KafkaBroker, topic: str
) -> None:
    aggregator = start_service("aggregator")
    await send("set", "a1", "u1", "love", client_ts=2_000)
    await send("set", "a1", "u1", "like", client_ts=1_000)  # older: a delayed retry
    await send("set", "a1", "u2", "wow")
    await settled(redis, kafka.bootstrap, topic)

    assert await counts(redis, "a1") == {"love": 1, "wow": 1}
    assert (
        await metric(aggregator.url, "reactions_aggregator_events_total", {"outcome": "stale"}) == 1
    )
    assert await metric(aggregator.url, "reactions_aggregator_corrective_records_total") == 1
    # The compacted log keeps the last record per key: it must restate the truth.
    records = [r for r in await read_topic(kafka.bootstrap, topic) if r.key == b"a1\x1fu1"]
    last = decode_event(records[-1].value)
    assert (last.op, last.reaction, last.client_ts) == ("set", "love", 2_000)
    assert dict(records[-1].headers)["origin"] == b"corrective"
    # Consuming the corrective is a no-op: counts stay, and no further corrective is needed.
    assert await counts(redis, "a1") == {"love": 1, "wow": 1}
    assert len(await read_topic(kafka.bootstrap, topic)) == 4


async def test_replaying_an_applied_range_changes_nothing(
    start_service: ServiceFactory, send: Send, redis: Redis, kafka: KafkaBroker, topic: str
) -> None:
    first = start_service("aggregator")
    rng = random.Random(4)
    for _ in range(200):
        article, user = f"a{rng.randrange(20)}", f"u{rng.randrange(8)}"
        if rng.random() < 0.2:
            await send("clear", article, user)
        else:
            await send("set", article, user, rng.choice(["like", "love", "wow"]))
    await settled(redis, kafka.bootstrap, topic)
    before = await all_counts(redis)
    first.stop()

    # Redis "loses" the resume positions while Kafka keeps the group's committed offsets.
    await redis.delete(*[position_key(topic, p) for p in range(PARTITIONS)])
    second = start_service("aggregator")
    await eventually(
        lambda: metric(second.url, "reactions_aggregator_events_total", {"outcome": "duplicate"}),
        lambda n: n == 200,
        what="the replay to be skipped as duplicates",
    )
    await settled(redis, kafka.bootstrap, topic)
    assert await all_counts(redis) == before
    assert (
        await metric(second.url, "reactions_aggregator_events_total", {"outcome": "applied"}) == 0
    )
    assert await metric(second.url, "reactions_aggregator_replays_total") == PARTITIONS


async def test_an_idle_aggregator_notices_a_flushed_redis_and_rebuilds_it(
    start_service: ServiceFactory, send: Send, redis: Redis, kafka: KafkaBroker, topic: str
) -> None:
    """A FLUSHALL keeps the Redis process (its run id): with no traffic, no batch would find
    the data gone. The watch sees the epoch marker go, and the member replays; readers are
    told to wait (the replay targets) until it has passed where the log ended."""
    aggregator = start_service("aggregator")
    for i in range(40):
        await send("set", f"a{i % 10}", f"u{i}", "love")
    await settled(redis, kafka.bootstrap, topic)
    before = await all_counts(redis)

    await redis.flushall()
    await eventually(
        lambda: metric(aggregator.url, "reactions_aggregator_replays_total"),
        lambda n: n >= 1,
        what="the member to notice",
    )
    await settled(redis, kafka.bootstrap, topic)
    assert await all_counts(redis) == before
    assert await redis.exists(epoch_key(topic))
    await eventually(
        lambda: redis.exists(replay_key(topic)), lambda n: n == 0, what="the replay's end"
    )


async def test_two_aggregators_share_the_partitions_while_one_joins_and_leaves(
    start_service: ServiceFactory, send: Send, redis: Redis, kafka: KafkaBroker, topic: str
) -> None:
    rng = random.Random(7)
    expected: dict[tuple[str, str], str | None] = {}

    async def traffic(n: int) -> None:
        for _ in range(n):
            article, user = f"a{rng.randrange(30)}", f"u{rng.randrange(10)}"
            if rng.random() < 0.2:
                await send("clear", article, user)
                expected[(article, user)] = None
            else:
                reaction = rng.choice(["like", "love", "wow", "sad"])
                await send("set", article, user, reaction)
                expected[(article, user)] = reaction

    first = start_service("aggregator")
    await traffic(150)
    second = start_service("aggregator", wait=False)
    await traffic(150)  # while the second one joins and the group rebalances
    await asyncio.to_thread(second.wait_ready)
    await traffic(150)
    first.stop()  # leaves: its partitions move to the second one
    await traffic(150)
    await settled(redis, kafka.bootstrap, topic)

    want: dict[str, dict[str, int]] = {}
    for (article, _), reaction in expected.items():
        if reaction:
            want.setdefault(article, {}).setdefault(reaction, 0)
            want[article][reaction] += 1
    assert await all_counts(redis) == want
    applied = await metric(second.url, "reactions_aggregator_events_total")
    assert applied > 0  # the second member did take part


async def test_sigterm_finishes_commits_and_exits_zero(
    start_service: ServiceFactory, send: Send, redis: Redis, kafka: KafkaBroker, topic: str
) -> None:
    aggregator = start_service("aggregator")
    for i in range(50):
        await send("set", f"a{i % 5}", f"u{i}", "love")
    await settled(redis, kafka.bootstrap, topic)
    proc = aggregator.process.proc
    assert proc is not None
    proc.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(proc.wait, 30) == 0

    consumer = AIOKafkaConsumer(bootstrap_servers=kafka.bootstrap, group_id=f"agg-{topic}")
    await consumer.start()
    try:
        for p in sorted({partition_for(f"a{i}", PARTITIONS) for i in range(5)}):
            position = await redis.get(position_key(topic, p))
            assert position is not None, f"no position stored for partition {p}"
            assert await consumer.committed(TopicPartition(topic, p)) == int(position)
    finally:
        await consumer.stop()
