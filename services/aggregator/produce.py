"""Corrective records (step 3 of a batch): what the aggregator appends to the topic itself.
Dead letters have their own module (deadletter.py)."""

from __future__ import annotations

import asyncio
from typing import Any

from shared.events import ReactionEvent, record_key
from shared.logs import get_logger

log = get_logger(__name__)


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
