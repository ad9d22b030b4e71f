"""What the aggregator tests observe: the counts in the view, and the moment the stored
positions reach the end of the topic; how they run an operator command, and an applier
fed hand-made records."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Callable

from aiokafka.structs import ConsumerRecord
from redis.asyncio import Redis

from services.aggregator.applier import REBUILD, ApplyMode, BatchApplier
from services.aggregator.retry import RetryPolicy
from shared.events import ReactionEvent
from shared.tallies import FENCE_FIELD, counts_key, position_key
from tests.support import end_offsets, eventually

PARTITIONS = 4  # as in stack_env

# send(op, article, user, reaction=None, client_ts=None): one event produced as ingest would.
Send = Callable[..., Awaitable[None]]


async def counts(redis: Redis, article: str) -> dict[str, int]:
    """The article's counts hash, without the fence."""
    raw = await redis.hgetall(counts_key(article))
    raw.pop(FENCE_FIELD, None)
    return {k: int(v) for k, v in raw.items()}


async def all_counts(redis: Redis) -> dict[str, dict[str, int]]:
    """Counts of every article in the view."""
    out = {}
    async for key in redis.scan_iter(match="rx:{*}:n", count=1000):
        article = key[len("rx:{") : -len("}:n")]
        out[article] = await counts(redis, article)
    return {a: c for a, c in out.items() if c}


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


async def run_command(env: dict[str, str], *args: str) -> tuple[int, str]:
    """`python -m services.aggregator ARGS…` with the test's environment; (status, output)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.aggregator",
        *args,
        env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    return proc.returncode or 0, out.decode(errors="replace")


def records(
    topic: str, events: list[ReactionEvent], partition: int, first: int = 0
) -> list[ConsumerRecord]:
    """`events` as the consumer would fetch them from `partition`, from offset `first` on."""
    return [
        ConsumerRecord(topic, partition, offset, 0, 0, e.key(), e.encode(), None, 0, 0, ())
        for offset, e in enumerate(events, start=first)
    ]


def new_applier(redis: Redis, topic: str, mode: ApplyMode = REBUILD) -> BatchApplier:
    """An applier on `redis` with no Kafka producer (`mode` must write nothing to Kafka)."""
    return BatchApplier(
        redis,
        None,
        topic=topic,
        dlq_topic=f"{topic}.dlq",
        partitions=PARTITIONS,
        retry=RetryPolicy(asyncio.Event()),
        mode=mode,
    )
