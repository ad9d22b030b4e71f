"""Apply marks through the real applier on a real Redis: a refused chunk stops the chunks
after it on its slot, a Redis that went back in time refuses every call on the slots it
lost, another writer's calls are adopted, and replies lost in transit are read again.

The applier's round trip goes through one seam (`_send_applies`); `Seamed` uses it to make
Redis refuse a call for real (the call is sent under a SHA Redis does not know, and Redis
answers NOSCRIPT) or to drop the replies of calls Redis applied. NOSCRIPT rather than OOM:
Redis runs a pipeline's calls back to back, so memory freed from another connection cannot
land between two of them, and an OOM that refuses the first call refuses the second too.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from deploy.local.redis import RedisServer
from services.aggregator.applier import REBUILD, BatchApplier
from services.aggregator.marks import Chain, RedisRolledBack
from services.aggregator.retry import RetryPolicy
from services.aggregator.scripts import (
    MAX_EVENTS_PER_CALL,
    ScriptCall,
    apply_keys,
    apply_script,
    evalsha_command,
    pipeline_outcomes,
)
from shared.events import ReactionEvent, partition_for
from shared.tallies import FENCE_FIELD, article_slot, counts_key, mark_key
from tests.aggregator.view import counts

PARTITIONS = 4
TOPIC = "marks-test"
UNKNOWN_SHA = "0" * 40


class Seamed(BatchApplier):
    """The applier, with a hand on its round trips; it keeps what each one came back with."""

    def __init__(self, redis: Redis) -> None:
        super().__init__(
            redis,
            None,
            topic=TOPIC,
            dlq_topic=f"{TOPIC}.dlq",
            partitions=PARTITIONS,
            retry=RetryPolicy(asyncio.Event(), first_delay_s=0.01),
            mode=REBUILD,
        )
        self.unknown_first = 0  # round trips left whose first call goes under UNKNOWN_SHA
        self.lose_replies = 0  # round trips left whose replies are dropped once applied
        self.after_lost: Callable[[], Awaitable[None]] | None = None
        self.rounds: list[list[str]] = []

    async def _send_applies(self, calls: Sequence[ScriptCall], chains: Sequence[Chain]) -> Any:
        if self.unknown_first:
            self.unknown_first -= 1
            sha = apply_script(self.redis).sha
            commands = [
                evalsha_command(UNKNOWN_SHA if i == 0 else sha, keys, args)
                for i, (keys, args) in enumerate(calls)
            ]
            outcomes = await pipeline_outcomes(self.redis, commands)
        else:
            outcomes = await super()._send_applies(calls, chains)
        self.rounds.append([_kind(outcome) for outcome in outcomes])
        if self.lose_replies:
            self.lose_replies -= 1
            if self.after_lost is not None:
                await self.after_lost()
            return [RedisConnectionError("connection lost before the replies")] * len(calls)
        return outcomes


def _kind(outcome: Any) -> str:
    if isinstance(outcome, ResponseError):
        return "error"
    return "refused" if outcome.startswith("!") else "applied"


def records(events: list[ReactionEvent], first: int = 0) -> dict[TopicPartition, Any]:
    """One partition's batch of `events` from offset `first` on (all on that partition)."""
    (partition,) = {partition_for(e.article_id, PARTITIONS) for e in events}
    batch = [
        ConsumerRecord(TOPIC, partition, offset, 0, 0, e.key(), e.encode(), None, 0, 0, ())
        for offset, e in enumerate(events, start=first)
    ]
    return {TopicPartition(TOPIC, partition): batch}


def votes(article: str, n: int, reaction: str = "love", prefix: str = "u") -> list[ReactionEvent]:
    return [ReactionEvent.new("set", article, f"{prefix}{i}", reaction) for i in range(n)]


def articles_on(partition: int, prefix: str) -> dict[int, list[str]]:
    """Article ids on `partition` by slot, until two share one."""
    by_slot: dict[int, list[str]] = {}
    i = 0
    while True:
        article = f"{prefix}{i}"
        i += 1
        if partition_for(article, PARTITIONS) == partition:
            slot = by_slot.setdefault(article_slot(article), [])
            slot.append(article)
            if len(slot) == 2:
                return by_slot


def spread(partition: int, prefix: str, n: int) -> list[str]:
    """`n` article ids on `partition`, each in a slot of its own."""
    found: dict[int, str] = {}
    i = 0
    while len(found) < n:
        article = f"{prefix}{i}"
        i += 1
        if partition_for(article, PARTITIONS) == partition:
            found.setdefault(article_slot(article), article)
    return list(found.values())


STORY = "story-1"
P = partition_for(STORY, PARTITIONS)


@pytest.fixture
async def raw(redis_server: RedisServer, redis: Redis) -> AsyncIterator[Redis]:
    """A client without decoding (DUMP and RESTORE move bytes) on the emptied Redis."""
    client = Redis.from_url(redis_server.url)
    yield client
    await client.aclose()


async def snapshot(raw: Redis, article: str) -> dict[str, bytes | None]:
    """The article's keys and its slot's marks, as DUMP has them."""
    return {key: await raw.dump(key) for key in apply_keys(article)}


async def go_back(raw: Redis, snap: dict[str, bytes | None]) -> None:
    """Put the keys back as they were: this slot of Redis goes back in time."""
    for key, dumped in snap.items():
        await raw.delete(key)
        if dumped is not None:
            await raw.restore(key, 0, dumped)


async def test_a_refused_chunk_does_not_let_the_next_one_skip_its_events(redis: Redis) -> None:
    # 1,000 events of one article: two calls in one round trip. Redis refuses the first
    # (NOSCRIPT here; OOM or BUSY alike) and would run the second, whose fence would then
    # jump past the first one's events, and the retry would count them as duplicates.
    applier = Seamed(redis)
    await applier.load_scripts()
    applier.unknown_first = 1
    events = votes("big-story", 2 * MAX_EVENTS_PER_CALL)

    report = await applier.apply(records(events))

    assert applier.rounds == [["error", "refused"], ["applied", "applied"]]
    assert await counts(redis, "big-story") == {"love": 2 * MAX_EVENTS_PER_CALL}
    assert report.outcomes["applied"] == len(events)


async def test_calls_chain_per_slot_and_a_retry_sends_what_did_not_apply(redis: Redis) -> None:
    by_slot = articles_on(3, "a")
    first, second = next(pair for pair in by_slot.values() if len(pair) == 2)
    other = next(pair[0] for slot, pair in by_slot.items() if slot != article_slot(first))
    applier = Seamed(redis)
    await applier.load_scripts()
    applier.unknown_first = 1
    events = votes(first, 3) + votes(second, 3) + votes(other, 3)

    report = await applier.apply(records(events))

    # The second article shares the first one's slot: refused with it. The third goes on.
    assert applier.rounds == [["error", "refused", "applied"], ["applied", "applied"]]
    assert report.outcomes["applied"] == 9 and report.outcomes["duplicate"] == 0
    for article in (first, second, other):
        assert await counts(redis, article) == {"love": 3}
    marks = {a: await redis.hget(mark_key(article_slot(a)), "3") for a in (first, other)}
    assert [mark.split(":")[0] for mark in marks.values()] == ["2", "1"]


async def test_a_redis_gone_back_refuses_every_call_on_the_slots_it_lost(
    redis: Redis, raw: Redis
) -> None:
    lost, kept = spread(0, "story-", 2)
    applier = Seamed(redis)
    await applier.load_scripts()
    await applier.apply(records(votes(lost, 10) + votes(kept, 10)))
    before = await snapshot(raw, lost)
    second = votes(lost, 5, "wow") + votes(kept, 5, "wow")
    await applier.apply(records(second, first=20))
    # Redis goes back to before the second batch, on the lost article's slot: as a replica
    # that missed it would after a failover.
    await go_back(raw, before)
    slot = article_slot(lost)

    # Slots no batch touches are compared when the masters change (the member's watch).
    assert await applier.marks.behind() == {0: [slot]}
    third = [ReactionEvent.new("set", a, "late", "love") for a in (lost, kept)]
    with pytest.raises(RedisRolledBack) as caught:
        await applier.apply(records(third, first=30))
    assert caught.value.behind == {0: [slot]}
    # Nothing landed on the lost slot: the second batch's fence would have hidden it.
    assert await counts(redis, lost) == {"love": 10}
    assert await redis.hget(counts_key(lost), FENCE_FIELD) == "0:9"
    assert await counts(redis, kept) == {"love": 6, "wow": 5}

    # What the member does next: read the marks anew and replay from the start.
    await applier.marks.adopt([0])
    everything = votes(lost, 10) + votes(kept, 10) + second + third
    report = await applier.apply(records(everything))
    assert report.outcomes["applied"] == 5 + 1
    assert await counts(redis, lost) == {"love": 6, "wow": 5}
    assert await counts(redis, kept) == {"love": 6, "wow": 5}


async def test_another_writer_moves_the_mark_and_the_calls_are_retried(redis: Redis) -> None:
    owner, zombie = Seamed(redis), Seamed(redis)
    await owner.load_scripts()
    await owner.marks.adopt([P])
    # A zombie member applies the first ten events (a batch fetched before a rebalance).
    await zombie.apply(records(votes(STORY, 10)))

    report = await owner.apply(records(votes(STORY, 15)))

    assert owner.rounds == [["refused"], ["applied"]]
    assert (report.outcomes["duplicate"], report.outcomes["applied"]) == (10, 5)
    assert await counts(redis, STORY) == {"love": 15}


async def test_replies_lost_after_redis_applied_the_calls_are_read_again(redis: Redis) -> None:
    applier = Seamed(redis)
    await applier.load_scripts()
    applier.lose_replies = 1

    report = await applier.apply(records(votes(STORY, 10)))

    # The marks of the calls cut off were read again and adopted; the fence skipped them.
    assert applier.rounds == [["applied"], ["applied"]]
    assert (report.outcomes["duplicate"], report.outcomes["applied"]) == (10, 0)
    assert await counts(redis, STORY) == {"love": 10}


async def test_a_redis_gone_back_while_replies_were_lost_is_a_rollback(
    redis: Redis, raw: Redis
) -> None:
    applier = Seamed(redis)
    await applier.load_scripts()
    before = await snapshot(raw, STORY)
    await applier.apply(records(votes(STORY, 10)))

    async def fail_over_to_a_lagging_replica() -> None:
        await go_back(raw, before)

    applier.lose_replies = 1
    applier.after_lost = fail_over_to_a_lagging_replica
    with pytest.raises(RedisRolledBack) as caught:
        await applier.apply(records(votes(STORY, 5, "wow"), first=10))
    assert caught.value.behind == {P: [article_slot(STORY)]}
    assert await counts(redis, STORY) == {}
