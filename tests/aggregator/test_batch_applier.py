"""BatchApplier on a real Redis with hand-made records: articles bigger than one Lua call,
and a Redis wiped between two batches (counts and trending)."""

from __future__ import annotations

import pytest
from aiokafka import TopicPartition
from redis.asyncio import Redis

from services.aggregator.applier import ApplyMode, RedisLostData
from services.aggregator.marks import RedisRolledBack
from services.aggregator.scripts import MAX_EVENTS_PER_CALL
from shared.events import ReactionEvent, partition_for
from shared.tallies import article_slot, epoch_key, position_key, readers_key, replay_key
from tests.aggregator.view import PARTITIONS, counts, new_applier, records


async def test_an_article_spanning_several_calls_is_counted_once(redis: Redis) -> None:
    topic = "applier-test"
    article = "big-story"
    partition = partition_for(article, PARTITIONS)
    n = MAX_EVENTS_PER_CALL * 2 + 100
    events = [ReactionEvent.new("set", article, f"u{i}", "love") for i in range(n)]
    # Then everyone moves to "wow", and the first 50 clear theirs.
    events += [ReactionEvent.new("set", article, f"u{i}", "wow") for i in range(n)]
    events += [ReactionEvent.new("clear", article, f"u{i}") for i in range(50)]
    applier = new_applier(redis, topic)
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


async def test_a_batch_applied_onto_a_wiped_redis_records_no_position(redis: Redis) -> None:
    topic = "applier-epoch-test"
    article, fresh = "story", "fresh-0"
    partition = partition_for(article, PARTITIONS)
    assert partition_for(fresh, PARTITIONS) == partition
    assert article_slot(fresh) != article_slot(article)
    tp = TopicPartition(topic, partition)
    applier = new_applier(redis, topic)
    await applier.load_scripts()
    await applier.check_epoch()
    first = [ReactionEvent.new("set", article, f"u{i}", "love") for i in range(10)]
    await applier.apply({tp: records(topic, first, partition)})
    epoch = await redis.get(epoch_key(topic))

    # Redis loses everything between two batches, on a connection that stays up (FLUSHALL).
    # A call on a slot the applier never wrote expects its mark at zero and so lands on the
    # empty Redis: its fence would hide the article's earlier events (had it any) from the
    # replay, unless the batch is taken back when the epoch check refuses its positions.
    await redis.flushall()
    await applier.load_scripts()
    second = [ReactionEvent.new("set", fresh, f"v{i}", "wow") for i in range(5)]
    with pytest.raises(RedisLostData):
        await applier.apply({tp: records(topic, second, partition, first=10)})
    assert await redis.get(position_key(topic, partition)) is None
    assert await counts(redis, fresh) == {}
    assert await redis.exists(readers_key(fresh)) == 0
    assert await redis.get(epoch_key(topic)) not in (None, epoch)
    # A call on a slot written before is refused outright: its mark went back to zero.
    third = [ReactionEvent.new("set", article, "w", "wow")]
    with pytest.raises(RedisRolledBack):
        await applier.apply({tp: records(topic, third, partition, first=15)})
    assert await counts(redis, article) == {}

    # The replay from the start (what the member does next, the marks read anew) ends in
    # the exact counts.
    await applier.marks.adopt([partition])
    await applier.apply({tp: records(topic, first + second + third, partition)})
    assert await counts(redis, article) == {"love": 10, "wow": 1}
    assert await counts(redis, fresh) == {"wow": 5}
    assert await redis.get(position_key(topic, partition)) == "16"


async def test_a_batch_refused_for_a_wiped_redis_writes_no_trending(redis: Redis) -> None:
    """The replay writes the batch's trending deltas again; written now as well, trending
    would count them twice, and from counts taken against the emptied Redis."""
    topic = "applier-trend-epoch-test"
    article, fresh = "story", "fresh-0"  # one partition, two slots (as above)
    partition = partition_for(article, PARTITIONS)
    tp = TopicPartition(topic, partition)
    # Live, but with no Kafka producer: the batches here need no dead letter or corrective.
    mode = ApplyMode(dead_letters=False, correctives=False, trending=True, notifications=True)
    applier = new_applier(redis, topic, mode)
    await applier.load_scripts()
    await applier.check_epoch()
    first = [ReactionEvent.new("set", article, f"u{i}", "love") for i in range(3)]
    await applier.apply({tp: records(topic, first, partition)})
    assert await redis.keys("rx:trend:*"), "a live batch writes trending"

    await redis.flushall()
    await applier.load_scripts()
    # Lands on the emptied Redis (a slot never written), then its positions are refused.
    second = [ReactionEvent.new("set", fresh, f"v{i}", "wow") for i in range(2)]
    with pytest.raises(RedisLostData):
        await applier.apply({tp: records(topic, second, partition, first=3)})
    assert await redis.keys("rx:trend:*") == []


async def test_a_new_epoch_holds_the_view_as_rebuilding_until_the_replay_passes_the_ends(
    redis: Redis,
) -> None:
    """The aggregator that finds the epoch marker gone records, with the new one, where
    each partition's log ends; positions reaching that offset end the partition's replay.
    Readers answer 503 rebuilding meanwhile (tests/reader/test_rebuilding.py)."""
    topic = "applier-replay-test"
    article = "story"
    partition = partition_for(article, PARTITIONS)
    tp = TopicPartition(topic, partition)
    mode = ApplyMode(dead_letters=False, correctives=False, trending=False, notifications=True)
    events = [ReactionEvent.new("set", article, f"u{i}", "love") for i in range(5)]
    applier = new_applier(redis, topic, mode)

    async def ends() -> dict[int, int]:
        return {partition: 3, partition + 1: 7}

    applier.topic_ends = ends
    await applier.load_scripts()
    await applier.check_epoch()
    assert await redis.hgetall(replay_key(topic)) == {str(partition): "3", str(partition + 1): "7"}
    # Another member finds the marker there: no new targets, the same epoch.
    other = new_applier(redis, topic, mode)
    await other.check_epoch()
    assert other.epoch == applier.epoch

    await applier.apply({tp: records(topic, events[:2], partition)})
    assert await redis.hget(replay_key(topic), str(partition)) == "3"
    await applier.apply({tp: records(topic, events[2:], partition, first=2)})
    assert await redis.hgetall(replay_key(topic)) == {str(partition + 1): "7"}

    # Redis loses its data: the batch that finds out (on a slot it never wrote, as the test
    # above) records the targets again.
    await redis.flushall()
    await applier.load_scripts()
    fresh = [ReactionEvent.new("set", "fresh-0", "v0", "wow")]
    with pytest.raises(RedisLostData):
        await applier.apply({tp: records(topic, fresh, partition, first=5)})
    assert await redis.hgetall(replay_key(topic)) == {str(partition): "3", str(partition + 1): "7"}
