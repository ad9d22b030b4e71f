"""What the aggregator writes to Kafka besides its commits: dead letters (step 1 of a batch)
and corrective records (step 3). Each returns once Kafka acknowledged every record."""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka.structs import ConsumerRecord

from shared.events import InvalidEvent, ReactionEvent, record_key
from shared.logs import get_logger

log = get_logger(__name__)


async def dead_letter(
    producer: Any, dlq_topic: str, dead: list[tuple[ConsumerRecord, InvalidEvent]]
) -> None:
    """Send invalid records to the dead-letter topic with the reason and their source."""
    sends = []
    for record, exc in dead:
        log.warning(
            "dead_letter",
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            reason=exc.reason,
            detail=exc.detail[:200],
        )
        headers = [
            *(record.headers or ()),
            ("reason", exc.reason.encode()),
            ("detail", exc.detail[:1000].encode()),
            ("source_topic", record.topic.encode()),
            ("source_partition", str(record.partition).encode()),
            ("source_offset", str(record.offset).encode()),
        ]
        sends.append(await producer.send(dlq_topic, record.value, key=record.key, headers=headers))
    await asyncio.gather(*sends)


async def append_correctives(
    producer: Any, topic: str, correctives: list[tuple[int, ReactionEvent]]
) -> None:
    """Append corrective records (a reader's state restated) to their articles' partitions."""
    sends = [
        await producer.send(
            topic,
            event.encode(),
            key=record_key(event.article_id, event.user_id),
            partition=partition,
            headers=[("origin", b"corrective")],
        )
        for partition, event in correctives
    ]
    await asyncio.gather(*sends)
