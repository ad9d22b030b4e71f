"""Operator commands: `rebuild` (the view from the log) and `erase-reader` (clears via Kafka)."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from redis.asyncio import Redis
from tqdm import tqdm

from services.aggregator.applier import REBUILD, BatchApplier
from services.aggregator.config import AggregatorSettings
from services.aggregator.marks import RedisRolledBack
from services.aggregator.recovery import replay_targets
from services.aggregator.retry import RetryPolicy
from shared.events import KEY_SEPARATOR, ReactionEvent, partition_for, valid_user_id
from shared.kafka import ensure_configured_topics, new_producer
from shared.logs import get_logger
from shared.shutdown import close_within
from shared.tallies import (
    APPLIES,
    ARTICLE_KEY_PATTERNS,
    connect_redis,
    position_pattern,
    replay_key,
)

log = get_logger(__name__)


class CommandError(RuntimeError):
    """The command cannot run as asked; the message says why and what to do."""


async def _read_to_end(settings: AggregatorSettings) -> tuple[Any, dict[TopicPartition, int]]:
    """A group-less consumer on every partition from the beginning, and the end offsets now."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=settings.max_partition_fetch_bytes,
    )
    await consumer.start()
    partitions = [TopicPartition(settings.topic, p) for p in range(settings.partitions)]
    consumer.assign(partitions)
    await consumer.seek_to_beginning(*partitions)
    ends: dict[TopicPartition, int] = await consumer.end_offsets(partitions)
    return consumer, ends


async def _group_members(settings: AggregatorSettings) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        described = await admin.describe_consumer_groups([settings.group_id])
    finally:
        await admin.close()
    groups = described[0].groups if described else []
    return sum(len(group[5]) for group in groups)


async def _delete(redis: Redis, pattern: str) -> int:
    deleted = 0
    batch: list[Any] = []
    async for key in redis.scan_iter(match=pattern, count=1000):
        batch.append(key)
        if len(batch) >= 1000:
            deleted += await redis.unlink(*batch)
            batch = []
    if batch:
        deleted += await redis.unlink(*batch)
    return deleted


async def rebuild(settings: AggregatorSettings, *, force: bool = False) -> dict[str, int]:
    """Empty the view and replay the whole topic into it; returns event counts by outcome.

    Runs while the aggregators are stopped (it refuses while the group has members): a
    live aggregator applying new events into the emptied view would move fences past
    history the rebuild has not replayed yet. Afterwards the aggregators resume from the
    positions the rebuild wrote.
    """
    await ensure_configured_topics(settings, with_dlq=False)
    members = await _group_members(settings)
    if members and not force:
        raise CommandError(
            f"consumer group {settings.group_id!r} has {members} active member(s); stop the "
            "aggregators first (or pass --force if they are gone and the group is stale)"
        )
    redis = connect_redis(settings.redis_url, APPLIES, cluster=settings.redis_cluster)
    consumer, ends = await _read_to_end(settings)
    try:
        starts = await consumer.beginning_offsets(list(ends))
        # Readers answer 503 rather than the emptied view's counts until the replay ends
        # (or, if it stops short, until the aggregators' positions pass these offsets).
        if targets := replay_targets(starts, ends):
            # (A copy: redis-py's mapping type takes no dict[int, int] as it is.)
            await redis.hset(replay_key(settings.topic), mapping=dict(targets.items()))
        deleted = 0
        for pattern in (*ARTICLE_KEY_PATTERNS, position_pattern(settings.topic)):
            deleted += await _delete(redis, pattern)
        log.info("rebuild_view_emptied", keys=deleted, topic=settings.topic)
        applier = BatchApplier(
            redis,
            None,
            topic=settings.topic,
            dlq_topic=settings.dlq_topic,
            partitions=settings.partitions,
            clock_skew_ms=settings.client_clock_skew_ms,
            retry=RetryPolicy(asyncio.Event()),
            mode=REBUILD,
        )
        await applier.load_scripts()
        total = sum(max(0, ends[tp] - starts[tp]) for tp in ends)
        outcomes: dict[str, int] = {}
        remaining = {tp for tp, end in ends.items() if end > starts[tp]}
        with tqdm(total=total, unit="ev", unit_scale=True, desc="rebuild", disable=None) as bar:
            while remaining:
                fetched = await consumer.getmany(*remaining, timeout_ms=500, max_records=20_000)
                batch = {}
                for tp, records in fetched.items():
                    kept = [r for r in records if r.offset < ends[tp]]
                    if kept:
                        batch[tp] = kept
                    if records and records[-1].offset + 1 >= ends[tp]:
                        remaining.discard(tp)
                if not batch:
                    continue
                try:
                    report = await applier.apply(batch)
                except RedisRolledBack as exc:
                    raise CommandError(
                        f"Redis went back in time during the rebuild ({exc}); run it again"
                    ) from exc
                for outcome, n in report.outcomes.items():
                    outcomes[outcome] = outcomes.get(outcome, 0) + n
                # Compaction leaves offset gaps: progress counts offsets, not records.
                bar.update(
                    sum(report.positions[tp] - records[0].offset for tp, records in batch.items())
                )
        await redis.delete(replay_key(settings.topic))
        log.info("rebuild_done", topic=settings.topic, **outcomes)
        return outcomes
    finally:
        await close_within("kafka_consumer", consumer.stop(), abort=consumer._client.close)
        await close_within("redis", redis.aclose())


async def erase_reader(settings: AggregatorSettings, user_id: str) -> list[str]:
    """Publish a clear (no client_ts) for every article the reader has a record on.

    Finds the articles by scanning the compacted topic's keys (article, reader): no
    per-pair index has to be kept in Redis for a rare operation. Returns the article ids.
    """
    if not valid_user_id(user_id):
        raise CommandError(f"{user_id!r} is not a user id (1–64 chars of [A-Za-z0-9._~-])")
    await ensure_configured_topics(settings, with_dlq=False)
    suffix = (KEY_SEPARATOR + user_id).encode()
    consumer, ends = await _read_to_end(settings)
    articles: set[str] = set()
    try:
        remaining = {tp for tp, end in ends.items() if end > 0}
        starts = await consumer.beginning_offsets(list(ends))
        remaining = {tp for tp in remaining if ends[tp] > starts[tp]}
        while remaining:
            fetched = await consumer.getmany(*remaining, timeout_ms=500, max_records=50_000)
            for tp, records in fetched.items():
                for record in records:
                    if record.offset < ends[tp] and record.key and record.key.endswith(suffix):
                        articles.add(record.key[: -len(suffix)].decode())
                if records and records[-1].offset + 1 >= ends[tp]:
                    remaining.discard(tp)
    finally:
        await close_within("kafka_consumer", consumer.stop(), abort=consumer._client.close)

    producer = new_producer(settings.kafka_bootstrap, request_timeout_ms=10_000)
    await producer.start()
    try:
        sends = []
        for article_id in sorted(articles):
            event = ReactionEvent.new("clear", article_id, user_id)
            sends.append(
                await producer.send(
                    settings.topic,
                    event.encode(),
                    key=event.key(),
                    partition=partition_for(article_id, settings.partitions),
                    headers=[("origin", b"erase-reader")],
                )
            )
        await asyncio.gather(*sends)
    finally:
        await close_within("kafka_producer", producer.stop(), abort=producer.client.close)
    log.info("reader_erased", user_id=user_id, articles=len(articles))
    sys.stdout.write(f"published clears for {user_id} on {len(articles)} article(s)\n")
    return sorted(articles)
