"""Topic management and client construction shared by the services."""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from shared.logs import get_logger

log = get_logger(__name__)


class PartitionCountMismatch(RuntimeError):
    """The topic exists with a different partition count than configured.

    Fatal: every article's partition (and so its offset fence) depends on the count.
    """


async def ensure_topics(
    bootstrap: str,
    topic: str,
    partitions: int,
    replication_factor: int,
    *,
    dlq_topic: str | None = None,
    timeout_s: float = 30.0,
) -> None:
    """Create the compacted topic (and the DLQ) if missing; refuse a changed partition count."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    await asyncio.wait_for(admin.start(), timeout_s)
    try:
        wanted = [
            NewTopic(
                topic,
                num_partitions=partitions,
                replication_factor=replication_factor,
                topic_configs={"cleanup.policy": "compact"},
            )
        ]
        if dlq_topic:
            wanted.append(
                NewTopic(
                    dlq_topic,
                    num_partitions=1,
                    replication_factor=replication_factor,
                    topic_configs={"cleanup.policy": "delete"},
                )
            )
        existing = set(await admin.list_topics())
        missing = [t for t in wanted if t.name not in existing]
        if missing:
            try:
                await admin.create_topics(missing)
                log.info("topics_created", topics=[t.name for t in missing])
            except TopicAlreadyExistsError:
                pass  # another service instance created it first
        actual = await _partition_count(admin, topic, timeout_s)
        if actual != partitions:
            raise PartitionCountMismatch(
                f"topic {topic!r} has {actual} partitions but {partitions} are configured; "
                "the partition count is frozen because each article's offset fence depends "
                "on it (see README, 'Scaling out', to migrate to a new topic)"
            )
    finally:
        await admin.close()


async def _partition_count(admin: AIOKafkaAdminClient, topic: str, timeout_s: float) -> int:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        described: list[dict[str, Any]] = await admin.describe_topics([topic])
        info = described[0] if described else {}
        if info.get("error_code", 0) == 0 and info.get("partitions"):
            return len(info["partitions"])
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"topic {topic!r} has no metadata after {timeout_s}s")
        await asyncio.sleep(0.1)


def new_producer(bootstrap: str, *, linger_ms: int = 2, request_timeout_ms: int = 2_000) -> Any:
    """An idempotent, acks=all producer (aiokafka's default has idempotence off)."""
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        enable_idempotence=True,
        acks="all",
        linger_ms=linger_ms,
        request_timeout_ms=request_timeout_ms,
        retry_backoff_ms=50,
        max_batch_size=64 * 1024,
    )
