"""Fixtures of the aggregator tests: a producer straight onto the test's topic, and probes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from deploy.local.kafka import KafkaBroker
from shared.events import ReactionEvent, partition_for
from shared.kafka import ensure_topics, new_producer
from shared.tallies import FENCE_FIELD, counts_key, position_key
from tests.support import eventually

PARTITIONS = 4  # as in stack_env

Send = Callable[..., Awaitable[None]]


@pytest.fixture
async def producer(kafka: KafkaBroker, topic: str) -> AsyncIterator[Any]:
    """An idempotent producer, with the test's topic (and its DLQ) created."""
    await ensure_topics(kafka.bootstrap, topic, PARTITIONS, 1, dlq_topic=f"{topic}.dlq")
    client = new_producer(kafka.bootstrap, request_timeout_ms=10_000)
    await client.start()
    yield client
    await client.stop()


@pytest.fixture
def send(producer: Any, topic: str) -> Send:
    """Produce one event as ingest would (key, partition by article id), acknowledged."""

    async def send_event(
        op: str, article: str, user: str, reaction: str | None = None, client_ts: int | None = None
    ) -> None:
        event = ReactionEvent.new(op, article, user, reaction, client_ts)  # type: ignore[arg-type]
        await producer.send_and_wait(
            topic,
            event.encode(),
            key=event.key(),
            partition=partition_for(article, PARTITIONS),
        )

    return send_event


async def counts(redis: Redis, article: str) -> dict[str, int]:
    """The article's counts hash, without the fence."""
    raw = await redis.hgetall(counts_key(article))
    raw.pop(FENCE_FIELD, None)
    return {k: int(v) for k, v in raw.items()}


async def metric(url: str, name: str, labels: dict[str, str] | None = None) -> float:
    """The value of one sample on a /metrics page (0 when absent)."""
    async with httpx.AsyncClient(timeout=5) as http:
        text = (await http.get(f"{url}/metrics")).text
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(
                sample.labels.get(k) == v for k, v in (labels or {}).items()
            ):
                total += sample.value
    return total


async def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    """The topic's end offset per partition, now."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        ends = await consumer.end_offsets(tps)
        return {tp.partition: offset for tp, offset in ends.items()}
    finally:
        await consumer.stop()


async def settled(redis: Redis, bootstrap: str, topic: str, *, deadline_s: float = 60) -> None:
    """Wait until the Redis positions reach the end of every non-empty partition."""

    async def behind() -> dict[int, tuple[int, int]]:
        ends = await end_offsets(bootstrap, topic)
        out = {}
        for p, end in ends.items():
            pos = int(await redis.get(position_key(topic, p)) or 0)
            if pos < end:
                out[p] = (pos, end)
        return out

    await eventually(behind, lambda b: not b, timeout=deadline_s, what="positions at the end")


async def all_counts(redis: Redis) -> dict[str, dict[str, int]]:
    """Counts of every article in the view."""
    out = {}
    async for key in redis.scan_iter(match="rx:{*}:n", count=1000):
        article = key[len("rx:{") : -len("}:n")]
        out[article] = await counts(redis, article)
    return {a: c for a, c in out.items() if c}


async def read_topic(bootstrap: str, topic: str, partitions: int = PARTITIONS) -> list[Any]:
    """Every record of the topic now, partition by partition."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        records: list[Any] = []
        remaining = {tp for tp in tps if ends[tp] > 0}
        while remaining:
            batch = await consumer.getmany(*remaining, timeout_ms=1000)
            for tp, recs in batch.items():
                records += recs
                if recs[-1].offset + 1 >= ends[tp]:
                    remaining.discard(tp)
        return records
    finally:
        await consumer.stop()
