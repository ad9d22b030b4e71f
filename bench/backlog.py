"""A realistic backlog of events: Zipf-skewed over articles, many readers, a share of changes
and clears; produced to a topic with the same key and partitioner as ingest."""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache

from aiokafka import AIOKafkaProducer

from shared.events import ReactionEvent, partition_for
from shared.reactions import DEFAULT_TYPES


@dataclass(frozen=True)
class Workload:
    """Shape of the data set: counts, skew and the share of changes and clears."""

    events: int
    articles: int = 10_000
    readers: int = 1_000_000
    zipf_s: float = 1.0
    change_share: float = 0.10
    clear_share: float = 0.10
    seed: int = 7
    prefix: str = "bench-a"


def zipf_weights(n: int, s: float) -> list[float]:
    """Cumulative Zipf weights for ranks 1..n (rank 1 the most popular)."""
    return list(itertools.accumulate(1.0 / (rank**s) for rank in range(1, n + 1)))


def generate(workload: Workload) -> Iterator[ReactionEvent]:
    """Events of the workload: new votes, then changes and clears of earlier voters."""
    rng = random.Random(workload.seed)
    cum = zipf_weights(workload.articles, workload.zipf_s)
    voters: dict[int, list[int]] = {}
    chunk = 10_000
    emitted = 0
    while emitted < workload.events:
        n = min(chunk, workload.events - emitted)
        for article in rng.choices(range(workload.articles), cum_weights=cum, k=n):
            article_id = f"{workload.prefix}{article}"
            earlier = voters.get(article)
            roll = rng.random()
            if earlier and roll < workload.change_share:
                reader = earlier[rng.randrange(len(earlier))]
                yield ReactionEvent.new("set", article_id, f"r{reader}", rng.choice(DEFAULT_TYPES))
            elif earlier and roll < workload.change_share + workload.clear_share:
                reader = earlier[rng.randrange(len(earlier))]
                yield ReactionEvent.new("clear", article_id, f"r{reader}")
            else:
                reader = rng.randrange(workload.readers)
                voters.setdefault(article, []).append(reader)
                yield ReactionEvent.new("set", article_id, f"r{reader}", rng.choice(DEFAULT_TYPES))
        emitted += n


async def produce(bootstrap: str, topic: str, partitions: int, workload: Workload) -> int:
    """Produce the workload to `topic` (acks=all, idempotent) and return the event count."""

    @cache
    def partition(article_id: str) -> int:
        return partition_for(article_id, partitions)

    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        enable_idempotence=True,
        acks="all",
        linger_ms=20,
        max_batch_size=512 * 1024,
        request_timeout_ms=30_000,
    )
    await producer.start()
    sent = 0
    try:
        pending: list[asyncio.Future[object]] = []
        for event in generate(workload):
            pending.append(
                await producer.send(
                    topic, event.encode(), key=event.key(), partition=partition(event.article_id)
                )
            )
            sent += 1
            if len(pending) >= 20_000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return sent
