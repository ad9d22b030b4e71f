"""Fixtures of the aggregator tests: a producer straight onto the test's topic."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from deploy.local.kafka import KafkaBroker
from shared.events import ReactionEvent, partition_for
from shared.kafka import TopicSpec, ensure_topics, new_producer
from tests.aggregator.view import PARTITIONS, Send


@pytest.fixture
async def producer(kafka: KafkaBroker, topic: str) -> AsyncIterator[Any]:
    """An idempotent producer, with the test's topic (and its DLQ) created."""
    await ensure_topics(kafka.bootstrap, TopicSpec(topic, PARTITIONS), dlq_topic=f"{topic}.dlq")
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
