"""The Redis layout of the materialised view, and the reads and writes all services share.

Every key of one article carries the hash tag `{article_id}`, so the apply script touches
one slot and the layout works unchanged on Redis Cluster.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from typing import Any, Final, cast

from redis.asyncio import Redis, RedisCluster
from redis.commands.core import AsyncScript

FENCE_FIELD: Final = "@fence"
CHANGES_CHANNEL: Final = "rx:changed"
TREND_BUCKET_SECONDS: Final = 60
# Trending reads 24 h back; buckets live a little longer so the oldest one is still whole.
TREND_TTL_SECONDS: Final = 25 * 3600
# Events per apply call: bounded, because a Lua script blocks Redis while it runs and
# cannot be killed once it has written.
MAX_EVENTS_PER_CALL: Final = 500


def counts_key(article_id: str) -> str:
    """Hash of reaction -> count, plus the article's fence."""
    return f"rx:{{{article_id}}}:n"


def readers_key(article_id: str) -> str:
    """Hash of reader -> current reaction (and the client_ts that set it)."""
    return f"rx:{{{article_id}}}:u"


def position_key(topic: str, partition: int) -> str:
    """Where the aggregator resumes a partition: written only after that batch's applies."""
    return f"rx:pos:{{{topic}}}:{partition}"


def trend_key(reaction: str, minute: int) -> str:
    """Sorted set of article -> net delta of `reaction` (or `all`) in one minute bucket.

    `minute` is unix seconds // 60 at apply time. All buckets of one reaction share a hash
    tag, so a window's buckets can be merged with one ZUNION even on Redis Cluster.
    """
    return f"rx:trend:{{trend-{reaction}}}:{minute}"


def connect_redis(url: str, *, cluster: bool = False) -> Redis:
    """A Redis client for `url`, or a Redis Cluster client seeded by it.

    Every key the services touch in one command shares a hash tag, so the same calls work
    on both; the cluster client is typed as Redis because it answers the same commands.
    """
    if cluster:
        return cast(Redis, RedisCluster.from_url(url))
    return Redis.from_url(url)


def apply_script(redis: Redis) -> AsyncScript:
    """The fenced batch-apply script, registered on `redis` (EVALSHA with EVAL fallback)."""
    source = resources.files("shared").joinpath("lua/apply_batch.lua").read_text()
    return redis.register_script(source)


@dataclass(frozen=True, slots=True)
class ReaderState:
    """A reader's stored reaction on one article ('' when cleared) and its client_ts."""

    reaction: str
    client_ts: int | None


def parse_reader_state(raw: str | bytes | None) -> ReaderState | None:
    """Decode a readers-hash value; None when the reader has no entry."""
    if raw is None:
        return None
    value = raw.decode() if isinstance(raw, bytes) else raw
    reaction, _, ts = value.partition("|")
    return ReaderState(reaction, int(ts) if ts else None)


async def read_tally(
    redis: Redis, article_id: str, reaction_ids: tuple[str, ...]
) -> dict[str, int]:
    """The zero-filled counts of one article, in configured order."""
    values: list[Any] = await redis.hmget(counts_key(article_id), list(reaction_ids))
    return {
        r: max(int(v), 0) if v is not None else 0 for r, v in zip(reaction_ids, values, strict=True)
    }


async def read_mine(redis: Redis, article_id: str, user_id: str) -> str | None:
    """The reader's current reaction on the article, or None."""
    state = parse_reader_state(await redis.hget(readers_key(article_id), user_id))
    return state.reaction or None if state else None
