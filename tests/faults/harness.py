"""The fault harness: what the fault tests do to Kafka and Redis besides running the stack
(producing straight onto the topic, changing its partitions, asking the group its state)
and what they read back (each article's view in Redis, fences, stored positions, a
member's assignment and log lines). The model and the oracle every test ends with are in
`oracle.py`."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from redis.asyncio import Redis, RedisCluster

from shared.events import ReactionEvent, partition_for
from shared.tallies import FENCE_FIELD, counts_key, position_key, readers_key

# The reason a valid event produced onto another partition than its article's is refused.
WRONG_PARTITION = "wrong_partition"


async def produce_raw(
    bootstrap: str,
    topic: str,
    records: Iterable[tuple[int, bytes | None, bytes | None]],
    *,
    max_request_size: int = 1024 * 1024,
    headers: list[tuple[str, bytes]] | None = None,
) -> None:
    """Produce (partition, key, value) records straight onto the topic, bypassing ingest,
    each with `headers`."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=True,
        max_request_size=max_request_size,
    )
    await producer.start()
    try:
        for partition, key, value in records:
            await producer.send_and_wait(
                topic, value, key=key, partition=partition, headers=headers
            )
    finally:
        await producer.stop()


async def produce_events(
    bootstrap: str, topic: str, partitions: int, events: Iterable[ReactionEvent]
) -> None:
    """Produce valid events the way ingest does (same key and partition), bypassing ingest."""
    await produce_raw(
        bootstrap,
        topic,
        ((partition_for(e.article_id, partitions), e.key(), e.encode()) for e in events),
    )


async def alter_partitions(bootstrap: str, topic: str, count: int) -> None:
    """Raise the partition count of an existing topic (what an operator must never do)."""
    from aiokafka.admin import NewPartitions

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_partitions({topic: NewPartitions(count)})
    finally:
        await admin.close()


async def group_members(bootstrap: str, group: str) -> tuple[str, int]:
    """The state of a consumer group and its number of members, from the broker."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    try:
        await admin.start()
        (response,) = await admin.describe_consumer_groups([group])
        (described,) = response.groups
        # (error_code, group_id, state, protocol_type, protocol, members, ...)
        return str(described[2]), len(described[5])
    except KafkaError as exc:
        # The coordinator moving or loading is a state to wait through, not a failure.
        return repr(exc), -1
    finally:
        await admin.close()


@dataclass
class ArticleView:
    """An article's materialised state: counts (no zeros), readers hash and fence."""

    counts: dict[str, int] = field(default_factory=dict)
    readers: dict[str, str] = field(default_factory=dict)
    fence: str | None = None


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


async def read_view(
    redis: Redis, article_ids: Iterable[str], *, atomic: bool = True
) -> dict[str, ArticleView]:
    """The materialised state of each article as Redis holds it now, as one snapshot.

    `atomic` reads in one MULTI; without it (Redis refuses MULTI when out of memory) the
    articles are read twice until two reads agree: fences only move forward, so equal
    fences in both reads mean no apply ran in between.
    """
    ids = list(article_ids)
    # A Redis Cluster runs MULTI only within one slot: read it the non-atomic way.
    if atomic and not isinstance(redis, RedisCluster):
        return await _read_view_once(redis, ids, transaction=True)
    first = await _read_view_once(redis, ids, transaction=False)
    while True:
        second = await _read_view_once(redis, ids, transaction=False)
        if second == first:
            return second
        first = second


async def _read_view_once(
    redis: Redis, ids: list[str], *, transaction: bool
) -> dict[str, ArticleView]:
    pipe = redis.pipeline(transaction=transaction)
    for article_id in ids:
        pipe.hgetall(counts_key(article_id))
        pipe.hgetall(readers_key(article_id))
    raw = await pipe.execute()
    views = {}
    for i, article_id in enumerate(ids):
        counts_raw: dict[Any, Any] = raw[2 * i]
        readers_raw: dict[Any, Any] = raw[2 * i + 1]
        counts = {_text(k): int(v) for k, v in counts_raw.items() if _text(k) != FENCE_FIELD}
        fence = next((_text(v) for k, v in counts_raw.items() if _text(k) == FENCE_FIELD), None)
        views[article_id] = ArticleView(
            counts={k: v for k, v in counts.items() if v != 0},
            readers={_text(k): _text(v) for k, v in readers_raw.items()},
            fence=fence,
        )
    return views


async def stored_articles(redis: Redis) -> set[str]:
    """Every article that has a counts hash in Redis."""
    found = set()
    async for key in redis.scan_iter(match="rx:{*}:n", count=1000):
        found.add(_text(key)[len("rx:{") : -len("}:n")])
    return found


async def fences(redis: Redis) -> dict[str, tuple[int, int]]:
    """article -> (partition, offset) of its fence, for every article in Redis."""
    articles = sorted(await stored_articles(redis))
    pipe = redis.pipeline(transaction=False)
    for article_id in articles:
        pipe.hget(counts_key(article_id), FENCE_FIELD)
    result = {}
    for article_id, raw in zip(articles, await pipe.execute(), strict=True):
        if raw is not None:
            p, o = _text(raw).split(":")
            result[article_id] = (int(p), int(o))
    return result


async def positions(redis: Redis, topic: str, partitions: int) -> dict[int, int]:
    """partition -> resume position the aggregator stored (missing partitions left out)."""
    values = await redis.mget([position_key(topic, p) for p in range(partitions)])
    return {p: int(v) for p, v in enumerate(values) if v is not None}


async def applied_beyond_position(
    redis: Redis, topic: str, partitions: int, *, only: Iterable[int] | None = None
) -> list[str]:
    """Articles whose fence is at or past their partition's stored position: a batch applied
    to Redis whose position is not stored yet (the aggregator is mid-batch). `only`: the
    articles of those partitions."""
    pos = await positions(redis, topic, partitions)
    if only is not None:
        pos = {p: n for p, n in pos.items() if p in set(only)}
    return [
        article
        for article, (p, offset) in (await fences(redis)).items()
        if p in pos and offset >= pos[p]
    ]


def assigned_partitions(log: Path) -> list[int]:
    """The partitions an aggregator owns now, from its log's last `partitions_assigned` line
    (none while it has none, or is between a revocation and the next assignment)."""
    owned: list[int] = []
    for line in log_lines_matching(log, '"event":"partitions_(assigned|revoked)"'):
        entry = orjson.loads(line)
        owned = list(entry["partitions"]) if entry["event"] == "partitions_assigned" else []
    return owned


def log_lines_matching(path: Path, pattern: str) -> list[str]:
    """Lines of a process's log that match a regular expression."""
    with contextlib.suppress(FileNotFoundError):
        return [
            line
            for line in path.read_text(errors="replace").splitlines()
            if re.search(pattern, line)
        ]
    return []
