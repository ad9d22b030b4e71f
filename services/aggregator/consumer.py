"""The apply loop: decode → group by article → one fenced Lua call per article → notify → commit."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.structs import ConsumerRecord
from redis.asyncio import Redis
from redis.exceptions import RedisError

from services.aggregator.config import AggregatorSettings
from shared.events import InvalidEvent, ReactionEvent, decode_event
from shared.logs import get_logger
from shared.tallies import (
    CHANGES_CHANNEL,
    MAX_EVENTS_PER_CALL,
    apply_script,
    counts_key,
    position_key,
    readers_key,
)

log = get_logger(__name__)


class ResumeFromRedis(ConsumerRebalanceListener):  # type: ignore[misc]
    """Seek each assigned partition to the position Redis kept, or replay it from the start.

    Redis, not Kafka's committed offset, decides where to resume: the committed offset can
    run ahead of what Redis durably kept (AOF fsyncs once a second), while the position
    key is written after the batch's applies and so never does. When the key is missing
    (first start, or Redis lost its data) the partition is replayed from the beginning;
    the per-article fences make that a no-op for whatever Redis still has.
    """

    def __init__(self, aggregator: Aggregator) -> None:
        self.aggregator = aggregator

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        log.info("partitions_revoked", partitions=sorted(tp.partition for tp in revoked))

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        await self.aggregator.seek_to_resume_positions(assigned)


class Aggregator:
    """Applies the topic's events to Redis, exactly once per event."""

    def __init__(self, settings: AggregatorSettings, redis: Redis) -> None:
        self.settings = settings
        self.redis = redis
        self.apply = apply_script(redis)
        self.consumer: Any = None
        self.known_reactions = frozenset(settings.types)

    async def start(self) -> None:
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=self.settings.kafka_bootstrap,
            group_id=self.settings.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=self.settings.session_timeout_ms,
            max_poll_records=self.settings.max_batch,
        )
        self.consumer.subscribe([self.settings.topic], listener=ResumeFromRedis(self))
        await self.consumer.start()

    async def stop(self) -> None:
        if self.consumer is not None:
            consumer, self.consumer = self.consumer, None
            await consumer.stop()

    async def seek_to_resume_positions(self, assigned: list[TopicPartition]) -> None:
        """Seek every assigned partition to its Redis-kept position, or to the beginning."""
        for tp in assigned:
            position = await self._with_redis_retry(
                lambda tp=tp: self.redis.get(position_key(tp.topic, tp.partition))
            )
            if position is None:
                log.info("partition_replay", topic=tp.topic, partition=tp.partition)
                await self.consumer.seek_to_beginning(tp)
            else:
                self.consumer.seek(tp, int(position))
        log.info("partitions_assigned", partitions=sorted(tp.partition for tp in assigned))

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until `stop` is set; the batch in flight is finished and committed."""
        while not stop.is_set():
            batch = await self.consumer.getmany(timeout_ms=200, max_records=self.settings.max_batch)
            if batch:
                await self.apply_batch(batch)

    async def apply_batch(self, batch: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        """Apply one batch from getmany to Redis, then record positions and commit."""
        by_article: dict[str, list[tuple[int, int, ReactionEvent]]] = defaultdict(list)
        for tp, records in batch.items():
            for record in records:
                try:
                    event = decode_event(record.value, self.known_reactions)
                except InvalidEvent as exc:
                    log.warning(
                        "invalid_event",
                        topic=tp.topic,
                        partition=tp.partition,
                        offset=record.offset,
                        reason=exc.reason,
                    )
                    continue
                by_article[event.article_id].append((tp.partition, record.offset, event))

        await self._with_redis_retry(lambda: self._apply_articles(by_article))

        positions = {tp: records[-1].offset + 1 for tp, records in batch.items() if records}
        await self._with_redis_retry(lambda: self._store_positions(positions))
        if by_article:
            await self._with_redis_retry(
                lambda: self.redis.publish(CHANGES_CHANNEL, orjson.dumps(list(by_article)))
            )
        await self.consumer.commit(positions)

    async def _apply_articles(
        self, by_article: dict[str, list[tuple[int, int, ReactionEvent]]]
    ) -> None:
        pipe = self.redis.pipeline(transaction=False)
        for article_id, events in by_article.items():
            keys = [counts_key(article_id), readers_key(article_id)]
            for start in range(0, len(events), MAX_EVENTS_PER_CALL):
                chunk = events[start : start + MAX_EVENTS_PER_CALL]
                args: list[str | int] = [chunk[0][0]]
                for _, offset, event in chunk:
                    args += [
                        offset,
                        "s" if event.op == "set" else "c",
                        event.user_id,
                        event.reaction or "",
                        event.client_ts if event.client_ts is not None else "",
                    ]
                await self.apply(keys=keys, args=args, client=pipe)
        await pipe.execute()

    async def _store_positions(self, positions: dict[TopicPartition, int]) -> None:
        await self.redis.mset(
            {position_key(tp.topic, tp.partition): pos for tp, pos in positions.items()}
        )

    async def _with_redis_retry(self, op: Any) -> Any:
        """Retry a Redis operation with backoff until it succeeds: never skip ahead."""
        delay = 0.05
        while True:
            try:
                return await op()
            except RedisError as exc:
                log.warning("redis_retry", error=repr(exc), retry_in_s=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
