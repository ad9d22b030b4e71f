"""Redis goes away under a running aggregator: the same batch is retried, nothing skipped."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from deploy.local.kafka import KafkaBroker
from deploy.local.process import free_port
from deploy.local.redis import RedisServer
from tests.aggregator.view import Send, all_counts, settled
from tests.support import ServiceFactory, eventually, metric


@pytest.fixture
async def own_redis(tmp_path: Path) -> AsyncIterator[RedisServer]:
    """A redis-server of this test's own, which the test stops and starts."""
    server = RedisServer(tmp_path / "redis-own", free_port())
    server.start()
    yield server
    server.stop()


async def test_a_redis_outage_retries_the_same_batch(
    start_service: ServiceFactory,
    send: Send,
    kafka: KafkaBroker,
    topic: str,
    own_redis: RedisServer,
) -> None:
    aggregator = start_service("aggregator", env={"REACTIONS_REDIS_URL": own_redis.url})
    redis = Redis.from_url(own_redis.url, decode_responses=True)
    try:
        for i in range(60):
            await send("set", f"a{i % 6}", f"u{i}", "love")
        await settled(redis, kafka.bootstrap, topic)

        await asyncio.to_thread(own_redis.stop)  # a clean stop: the AOF keeps everything
        for i in range(60):
            await send("set", f"a{i % 6}", f"u{i}", "wow")  # every reader moves
        retries = "reactions_aggregator_retries_total"
        await eventually(
            lambda: metric(aggregator.url, retries, {"dependency": "redis"}),
            lambda n: n > 0,
            what="Redis retries while Redis is down",
        )
        assert await metric(aggregator.url, retries, {"dependency": "kafka"}) == 0
        # No batch finishes meanwhile; the lag, read from Kafka's end offsets, shows them all.
        await eventually(
            lambda: metric(aggregator.url, "reactions_aggregator_consumer_lag"),
            lambda n: n == 60,
            timeout=30,
            what="the lag of the 60 events stalled behind Redis",
        )
        await asyncio.to_thread(own_redis.start)
        await redis.aclose()
        redis = Redis.from_url(own_redis.url, decode_responses=True)
        await settled(redis, kafka.bootstrap, topic)
        assert await all_counts(redis) == {f"a{i}": {"wow": 10} for i in range(6)}
        await eventually(
            lambda: metric(aggregator.url, "reactions_aggregator_consumer_lag"),
            lambda n: n == 0,
            timeout=30,
            what="no lag once caught up",
        )
    finally:
        await redis.aclose()
