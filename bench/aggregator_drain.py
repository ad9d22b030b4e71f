"""How fast one aggregator drains a backlog: `python -m bench.aggregator_drain [--events N]`.

Pre-produces a realistic backlog (article popularity Zipf-skewed over 10,000 articles, 80%
first reactions, 20% changes and clears), then runs one in-process aggregator on an empty
Redis until its positions reach the end of every partition. Without --bootstrap/--redis it
starts its own Kafka broker and redis-server on free ports under a temporary directory.
`drain()` is importable for `make bench`.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from redis.asyncio import Redis

from deploy.local.kafka import KafkaBroker
from deploy.local.process import free_port
from deploy.local.redis import RedisServer
from services.aggregator.config import AggregatorSettings
from services.aggregator.consumer import Aggregator
from shared.events import KEY_SEPARATOR, partition_for
from shared.kafka import TopicSpec, ensure_topics
from shared.reactions import DEFAULT_TYPES
from shared.tallies import position_key

DEFAULT_MAX_BATCH: int = AggregatorSettings.model_fields["max_batch"].default


def backlog(events: int, articles: int, seed: int = 1) -> list[tuple[str, str, bytes]]:
    """(article, user, value) records: Zipf-skewed articles, 20% changes and clears."""
    rng = random.Random(seed)
    weights = [1 / (rank + 1) for rank in range(articles)]
    picks = rng.choices(range(articles), weights=weights, k=events)
    seen: dict[str, list[str]] = {}
    out = []
    now = int(time.time() * 1000)
    for i, a in enumerate(picks):
        article = f"story-{a}"
        users = seen.setdefault(article, [])
        body: dict[str, Any] = {"v": 1, "event_id": str(uuid.UUID(int=rng.getrandbits(128)))}
        if users and rng.random() < 0.2:
            user = rng.choice(users)
            if rng.random() < 0.5:
                body |= {"op": "clear", "article_id": article, "user_id": user}
            else:
                body |= {"op": "set", "article_id": article, "user_id": user}
                body["reaction"] = rng.choice(DEFAULT_TYPES)
        else:
            user = f"reader-{rng.getrandbits(40):010x}"
            users.append(user)
            body |= {"op": "set", "article_id": article, "user_id": user}
            body["reaction"] = rng.choice(DEFAULT_TYPES)
        body["ts"] = now + i // 100
        body["client_ts"] = now + i // 100
        out.append((article, user, orjson.dumps(body)))
    return out


async def produce_backlog(
    bootstrap: str, topic: str, partitions: int, events: int, articles: int
) -> None:
    """Produce the backlog onto `topic` (created with `partitions` if missing)."""
    await ensure_topics(bootstrap, TopicSpec(topic, partitions), dlq_topic=f"{topic}.dlq")
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks=1, linger_ms=20, max_batch_size=512 * 1024
    )
    await producer.start()
    try:
        pending = []
        for article, user, value in backlog(events, articles):
            key = f"{article}{KEY_SEPARATOR}{user}".encode()
            pending.append(
                await producer.send(
                    topic, value, key=key, partition=partition_for(article, partitions)
                )
            )
            if len(pending) >= 20_000:
                await asyncio.gather(*pending)
                pending = []
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


async def _ends(bootstrap: str, topic: str, partitions: int) -> dict[int, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        return {tp.partition: n for tp, n in (await consumer.end_offsets(tps)).items()}
    finally:
        await consumer.stop()


async def drain_async(
    bootstrap: str,
    redis_url: str,
    topic: str,
    *,
    partitions: int = 12,
    max_batch: int = DEFAULT_MAX_BATCH,
) -> tuple[int, float]:
    """Run one aggregator on an emptied Redis until it has applied the whole topic.

    Returns (records, seconds from the first applied batch to the last).
    """
    ends = await _ends(bootstrap, topic, partitions)
    total = sum(ends.values())
    redis = Redis.from_url(redis_url)
    await redis.flushdb()
    settings = AggregatorSettings(
        kafka_bootstrap=bootstrap,
        redis_url=redis_url,
        topic=topic,
        partitions=partitions,
        group_id=f"bench-{uuid.uuid4().hex[:8]}",
        max_batch=max_batch,
    )
    aggregator = Aggregator(settings, redis)
    stop = asyncio.Event()
    await aggregator.start()
    run = asyncio.create_task(aggregator.run(stop))
    try:
        first: float | None = None
        done_at_first = 0
        while True:
            positions = await redis.mget([position_key(topic, p) for p in range(partitions)])
            done = sum(int(p) for p in positions if p is not None)
            if done and first is None:
                # Timing starts at the first applied batch: group join is not draining.
                first, done_at_first = time.perf_counter(), done
            if all(int(p or 0) >= ends[i] for i, p in enumerate(positions)):
                break
            if run.done():
                run.result()
            await asyncio.sleep(0.05)
        assert first is not None
        return total - done_at_first, time.perf_counter() - first
    finally:
        stop.set()
        await run
        await aggregator.stop()
        await redis.aclose()


def drain(
    bootstrap: str,
    redis_url: str,
    topic: str,
    *,
    partitions: int = 12,
    max_batch: int = DEFAULT_MAX_BATCH,
) -> float:
    """Events per second one aggregator applies while draining `topic` (already produced)."""
    records, seconds = asyncio.run(
        drain_async(bootstrap, redis_url, topic, partitions=partitions, max_batch=max_batch)
    )
    return records / seconds


def main() -> None:
    """Produce a backlog (starting Kafka and Redis if not given), drain it, print the rate."""
    parser = argparse.ArgumentParser(prog="python -m bench.aggregator_drain")
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--articles", type=int, default=10_000)
    parser.add_argument("--partitions", type=int, default=12)
    parser.add_argument("--max-batch", type=int, default=DEFAULT_MAX_BATCH)
    parser.add_argument("--bootstrap", help="an existing Kafka (default: start one)")
    parser.add_argument("--redis", help="an existing, disposable Redis URL (it is flushed)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="reactions-bench-") as tmp:
        broker = redis_server = None
        if args.bootstrap is None:
            broker = KafkaBroker(Path(tmp) / "kafka", free_port(), free_port(), heap="1g")
            broker.start()
        if args.redis is None:
            redis_server = RedisServer(Path(tmp) / "redis", free_port())
            redis_server.start()
        try:
            bootstrap = args.bootstrap or broker.bootstrap  # type: ignore[union-attr]
            redis_url = args.redis or redis_server.url  # type: ignore[union-attr]
            topic = f"bench-{uuid.uuid4().hex[:8]}"
            started = time.perf_counter()
            asyncio.run(
                produce_backlog(bootstrap, topic, args.partitions, args.events, args.articles)
            )
            sys.stdout.write(
                f"produced {args.events:,} events in {time.perf_counter() - started:.1f}s\n"
            )
            rate = drain(
                bootstrap, redis_url, topic, partitions=args.partitions, max_batch=args.max_batch
            )
            sys.stdout.write(f"drained at {rate:,.0f} events/s (one aggregator process)\n")
        finally:
            if redis_server is not None:
                redis_server.stop()
            if broker is not None:
                broker.stop()


if __name__ == "__main__":
    main()
