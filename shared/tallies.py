"""The Redis layout of the materialised view, and the reads and writes all services share.

Every key of one article carries the hash tag `{article_id}`, so the apply script touches
one slot and the layout works unchanged on Redis Cluster.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, Final, cast

import hiredis
from redis.asyncio import BlockingConnectionPool, Redis, RedisCluster
from redis.commands.core import AsyncScript
from redis.exceptions import ResponseError

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


def epoch_key(topic: str) -> str:
    """A random id created once per Redis data set: if it changes, Redis lost its data."""
    return f"rx:epoch:{{{topic}}}"


def trend_key(reaction: str, minute: int) -> str:
    """Sorted set of article -> net delta of `reaction` (or `all`) in one minute bucket.

    `minute` is unix seconds // 60 at apply time. All buckets of one reaction share a hash
    tag, so a window's buckets can be merged with one ZUNION even on Redis Cluster.
    """
    return f"rx:trend:{{trend-{reaction}}}:{minute}"


def position_pattern(topic: str) -> str:
    """SCAN pattern of every resume position of `topic`."""
    return f"rx:pos:{{{topic}}}:*"


# SCAN patterns of the per-article keys (counts and readers), for a rebuild from scratch.
ARTICLE_KEY_PATTERNS: Final = ("rx:{*}:n", "rx:{*}:u")


def parse_counts(row: Sequence[Any]) -> tuple[int, ...]:
    """Counts as HMGET returns them (None for a type never counted), zero-filled, never negative."""
    return tuple(max(int(v), 0) if v is not None else 0 for v in row)


def connect_redis(url: str, *, cluster: bool = False, **options: Any) -> Redis:
    """A Redis client for `url`, or a Redis Cluster client seeded by it.

    Every key the services touch in one command shares a hash tag, so the same calls work
    on both; the cluster client is typed as Redis because it answers the same commands.
    """
    if cluster:
        return cast(Redis, RedisCluster.from_url(url, **options))
    # A pool that makes a burst wait for a connection: redis-py's default pool fails every
    # command beyond its 100th concurrent one, which a reader under a spike of GETs and SSE
    # pushes reaches at once.
    pool = BlockingConnectionPool.from_url(
        url, max_connections=MAX_CONNECTIONS, timeout=CONNECTION_WAIT_S, **options
    )
    return Redis.from_pool(pool)


# Connections per process to one Redis, and how long a command waits for one (then fails
# like any other Redis error: the reader answers 503).
MAX_CONNECTIONS: Final = 200
CONNECTION_WAIT_S: Final = 5.0


# On Redis Cluster, how many script calls are in flight at once (its pipelines refuse scripts).
CLUSTER_SCRIPT_CONCURRENCY: Final = 64  # well under the client pool (100 per node)


async def evalsha_many(
    redis: Redis, sha: str, calls: Sequence[tuple[Sequence[str], Sequence[str | int]]]
) -> list[Any]:
    """Run many EVALSHA calls in one round trip; their replies in order.

    On Redis, one non-transactional pipeline, which runs the calls in the order given. Redis
    Cluster refuses scripts in pipelines, so there the calls go concurrently (the client sends
    each to its slot's node) except that calls on the same first key run one after another,
    in the order given: an article's chunks must apply in offset order.
    """
    if not isinstance(redis, RedisCluster):
        return await run_pipelined(
            redis, [evalsha_command(sha, keys, args) for keys, args in calls]
        )
    replies: list[Any] = [None] * len(calls)
    by_key: dict[str, list[int]] = {}
    for i, (keys, _) in enumerate(calls):
        by_key.setdefault(keys[0], []).append(i)
    slots = asyncio.Semaphore(CLUSTER_SCRIPT_CONCURRENCY)

    async def in_order(indexes: list[int]) -> None:
        async with slots:
            for i in indexes:
                keys, args = calls[i]
                replies[i] = await redis.evalsha(sha, len(keys), *keys, *args)

    await asyncio.gather(*(in_order(indexes) for indexes in by_key.values()))
    return replies


def evalsha_command(
    sha: str, keys: Sequence[str], args: Sequence[str | int | bytes]
) -> tuple[str | int | bytes, ...]:
    """The arguments of one EVALSHA call, for `run_pipelined`."""
    return ("EVALSHA", sha, len(keys), *keys, *args)


async def run_pipelined(
    redis: Redis, commands: Sequence[tuple[str | int | bytes, ...]]
) -> list[Any]:
    """A non-transactional pipeline of `commands`, packed by hiredis; the replies in order.

    What redis-py's own pipeline does, minus its pure-Python encoder: packing thousands of
    EVALSHA calls cost the aggregator more CPU than decoding the events. Raises the first
    error reply after reading every reply, as a pipeline does.
    """
    packed = b"".join(hiredis.pack_command(cast(Any, command)) for command in commands)
    pool = redis.connection_pool
    connection = await pool.get_connection()  # type: ignore[no-untyped-call]
    try:
        await connection.send_packed_command(packed, check_health=False)
        replies: list[Any] = []
        for _ in commands:
            try:
                replies.append(await connection.read_response())
            except ResponseError as exc:
                replies.append(exc)
    except BaseException:
        # The replies left unread would be taken for the next command's.
        await connection.disconnect()
        raise
    finally:
        await pool.release(connection)
    for reply in replies:
        if isinstance(reply, ResponseError):
            raise reply
    return replies


def _script(redis: Redis, name: str) -> AsyncScript:
    source = resources.files("shared").joinpath(f"lua/{name}.lua").read_text()
    return redis.register_script(source)


def apply_script(redis: Redis) -> AsyncScript:
    """The fenced batch-apply script, registered on `redis` (EVALSHA with EVAL fallback)."""
    return _script(redis, "apply_batch")


def positions_script(redis: Redis) -> AsyncScript:
    """The script writing resume positions only under an unchanged epoch marker."""
    return _script(redis, "positions")


def trend_script(redis: Redis) -> AsyncScript:
    """The script adding one batch's net deltas of one reaction to a minute bucket."""
    return _script(redis, "trend_add")


def apply_event_line(offset: int, user_id: str, reaction: str | None, client_ts: int | None) -> str:
    """One event as the apply script reads it: a set, or a clear when `reaction` is None.

    (Ids and reaction names never contain tabs or newlines: their patterns forbid them.)
    """
    return f"{offset}\t{user_id}\t{reaction or ''}\t{'' if client_ts is None else client_ts}\n"


@dataclass(slots=True)
class ApplyReply:
    """What one apply call did: outcome counts, net count deltas, readers to restate."""

    applied: int
    noop: int
    duplicate: int
    stale: int
    deltas: dict[str, int]
    correctives: list[tuple[str, str, int]]

    def merge(self, other: ApplyReply) -> None:
        """Fold in the reply of the article's next chunk."""
        self.applied += other.applied
        self.noop += other.noop
        self.duplicate += other.duplicate
        self.stale += other.stale
        for reaction, delta in other.deltas.items():
            self.deltas[reaction] = self.deltas.get(reaction, 0) + delta
        self.deltas = {r: d for r, d in self.deltas.items() if d}
        done = {user for user, _, _ in other.correctives}
        kept = [c for c in self.correctives if c[0] not in done]
        self.correctives = kept + other.correctives


def parse_apply_reply(raw: bytes | str) -> ApplyReply:
    """Decode the apply script's reply (three tab-separated lines)."""
    text = raw.decode() if isinstance(raw, bytes) else raw
    outcome, deltas, corrective = text.split("\n")
    applied, noop, duplicate, stale = (int(n) for n in outcome.split("\t"))
    d = deltas.split("\t") if deltas else []
    c = corrective.split("\t") if corrective else []
    return ApplyReply(
        applied,
        noop,
        duplicate,
        stale,
        {d[i]: int(d[i + 1]) for i in range(0, len(d), 2)},
        [(c[i], c[i + 1], int(c[i + 2])) for i in range(0, len(c), 3)],
    )


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
