"""BatchApplier on a real Redis with hand-made records: articles bigger than one Lua call."""

from __future__ import annotations

import asyncio

from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord
from redis.asyncio import Redis

from services.aggregator.consumer import BatchApplier
from shared.events import ReactionEvent, partition_for
from shared.tallies import MAX_EVENTS_PER_CALL, position_key
from tests.aggregator.conftest import counts

PARTITIONS = 4


def records(topic: str, events: list[ReactionEvent], partition: int) -> list[ConsumerRecord]:
    return [
        ConsumerRecord(topic, partition, offset, 0, 0, e.key(), e.encode(), None, 0, 0, ())
        for offset, e in enumerate(events)
    ]


async def test_an_article_spanning_several_calls_is_counted_once(redis: Redis) -> None:
    topic = "applier-test"
    article = "big-story"
    partition = partition_for(article, PARTITIONS)
    n = MAX_EVENTS_PER_CALL * 2 + 100
    events = [ReactionEvent.new("set", article, f"u{i}", "love") for i in range(n)]
    # Then everyone moves to "wow", and the first 50 clear theirs.
    events += [ReactionEvent.new("set", article, f"u{i}", "wow") for i in range(n)]
    events += [ReactionEvent.new("clear", article, f"u{i}") for i in range(50)]
    applier = BatchApplier(
        redis,
        None,
        topic=topic,
        dlq_topic=f"{topic}.dlq",
        partitions=PARTITIONS,
        reactions=frozenset({"love", "wow"}),
        stop=asyncio.Event(),
        side_effects=False,
    )
    await applier.load_scripts()
    tp = TopicPartition(topic, partition)
    batch = {tp: records(topic, events, partition)}

    report = await applier.apply(batch)
    assert report.outcomes["applied"] == len(events)
    assert report.changed == [article]
    assert await counts(redis, article) == {"wow": n - 50}
    assert await redis.get(position_key(topic, partition)) == str(len(events))

    again = await applier.apply(batch)  # a replay: every event is behind the fence
    assert again.outcomes["duplicate"] == len(events)
    assert again.changed == []
    assert await counts(redis, article) == {"wow": n - 50}
