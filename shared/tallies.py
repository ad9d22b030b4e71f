"""The Redis layout of the materialised view, what every service agrees on about it, and
the client every service connects with.

Every key of one article carries the hash tag `{article_id}`, so the apply script
(`shared/lua/apply_batch.lua`) touches one slot and the layout works unchanged on Redis
Cluster. How the aggregator calls the scripts lives with it (`services/aggregator/scripts.py`).
"""

from __future__ import annotations

import functools
import socket
from binascii import crc_hqx
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, cast

from redis.asyncio import BlockingConnectionPool, Redis, RedisCluster

FENCE_FIELD: Final = "@fence"
CHANGES_CHANNEL: Final = "rx:changed"
TREND_BUCKET_SECONDS: Final = 60
# The longest trending window: a vote cast longer ago than this is in none of them.
TREND_HORIZON_MINUTES: Final = 24 * 60
# Trending buckets by span, in minutes, coarsest first: each batch's deltas go to the
# minute's bucket and to the 5-minute and hourly rollups that hold it, so a window merges a
# few dozen sets, not one per minute (the reader's services/reader/trending.py).
TREND_SPANS: Final = (60, 5, 1)
# Every bucket may serve the 24 h window (minute buckets at its edges), and lives a little
# longer so the oldest one is still whole.
TREND_TTL_SECONDS: Final = 25 * 3600
# Articles a trending bucket keeps, those with the highest net delta: a ranking of 100 needs
# no long tail, and ids made up by the thousand must not make every merge of a window
# slower (or Redis larger) without end.
TREND_BUCKET_MAX: Final = 1_000
# The first minute the rollups hold whole: aggregators have written them since (set once;
# before it, and without it, a window merges minute buckets).
TREND_ROLLUPS_SINCE_KEY: Final = "rx:trend:rollups-since"


def counts_key(article_id: str) -> str:
    """Hash of reaction -> count, plus the article's fence."""
    return f"rx:{{{article_id}}}:n"


def readers_key(article_id: str) -> str:
    """Hash of reader -> current reaction (and the client_ts that set it)."""
    return f"rx:{{{article_id}}}:u"


# Redis Cluster's hash slots; the apply marks keep one hash per slot on a single Redis too.
SLOTS: Final = 16384


def article_slot(article_id: str) -> int:
    """The hash slot of an article's keys (their hash tag is the article id)."""
    return crc_hqx(article_id.encode(), 0) % SLOTS


def mark_key(slot: int) -> str:
    """Hash of partition -> apply mark of the articles in `slot`; the key lives in that slot.

    The mark counts the apply calls Redis executed on those articles (see
    `services/aggregator/marks.py`). Being in the articles' slot, it may be read and
    written by their apply script on Redis Cluster too.
    """
    return mark_keys()[slot]


@functools.cache
def mark_keys() -> tuple[str, ...]:
    """`mark_key` of every slot, in slot order: `rx:mark:{m<n>}` with the first n whose tag
    hashes to the slot (about 150,000 CRC16 computations, once per process)."""
    tags: list[str | None] = [None] * SLOTS
    missing, n = SLOTS, 0
    while missing:
        tag = f"m{n}"
        slot = crc_hqx(tag.encode(), 0) % SLOTS
        if tags[slot] is None:
            tags[slot] = tag
            missing -= 1
        n += 1
    return tuple(f"rx:mark:{{{tag}}}" for tag in tags)


def position_key(topic: str, partition: int) -> str:
    """Where the aggregator resumes a partition: written only after that batch's applies."""
    return f"rx:pos:{{{topic}}}:{partition}"


def epoch_key(topic: str) -> str:
    """A random id created once per Redis data set: if it changes, Redis lost its data."""
    return f"rx:epoch:{{{topic}}}"


def replay_key(topic: str) -> str:
    """Hash of partition -> offset: the view of those partitions is being rebuilt (Redis lost
    its data, or `rebuild` runs) until their resume positions reach that offset. Readers
    answer 503 meanwhile, never counts that are only part of the log."""
    return f"rx:replay:{{{topic}}}"


def _trend_tag(reaction: str) -> str:
    """What every trending key of `reaction` starts with, its hash tag included."""
    return f"rx:trend:{{trend-{reaction}}}"


def trend_key(reaction: str, minute: int) -> str:
    """Sorted set of article -> net delta of `reaction` (or `all`) in one minute bucket.

    `minute` is unix seconds // 60 of the votes' server `ts` (when they were cast). All
    buckets of one reaction share a hash tag, so a window's buckets can be merged with one
    ZUNION even on Redis Cluster.
    """
    return f"{_trend_tag(reaction)}:{minute}"


def trend_bucket_key(reaction: str, span: int, index: int) -> str:
    """The bucket of `span` minutes (one of TREND_SPANS) numbered `index`: minutes
    `index * span` to `index * span + span - 1`, under the reaction's hash tag."""
    if span == 1:
        return trend_key(reaction, index)
    return f"{_trend_tag(reaction)}:{span}m:{index}"


def trend_merge_key(reaction: str) -> str:
    """The scratch key a window's merge of `reaction` is written to and deleted from, in the
    same script call (the buckets' hash tag)."""
    return f"{_trend_tag(reaction)}:merge"


def trend_keys(reaction: str, minute: int) -> tuple[str, ...]:
    """Every bucket that holds `minute`: its own and the rollups, coarsest first."""
    return tuple(trend_bucket_key(reaction, span, minute // span) for span in TREND_SPANS)


def position_pattern(topic: str) -> str:
    """SCAN pattern of every resume position of `topic`."""
    return f"rx:pos:{{{topic}}}:*"


# SCAN patterns of the per-article keys (counts and readers), for a rebuild from scratch.
ARTICLE_KEY_PATTERNS: Final = ("rx:{*}:n", "rx:{*}:u")


# The seq of an article no event was applied to: below every offset, so a vote's 202 seq
# (its offset, 0 or more) is never taken as included in a tally that has seen nothing.
NO_SEQ: Final = -1


def parse_fence_offset(raw: str | bytes | None) -> int:
    """The offset of an article's fence (`partition:offset`), NO_SEQ when it has none."""
    if raw is None:
        return NO_SEQ
    value = raw.decode() if isinstance(raw, bytes) else raw
    _, _, offset = value.partition(":")
    return int(offset) if offset.isdigit() else NO_SEQ


def parse_counts(row: Sequence[Any]) -> tuple[int, ...]:
    """Counts as HMGET returns them (None for a type never counted), zero-filled, never negative."""
    counts = tuple([int(v) if v is not None else 0 for v in row])
    # A negative count would be a bug elsewhere; clamped, without a max() per value.
    return counts if min(counts, default=0) >= 0 else tuple(max(c, 0) for c in counts)


@dataclass(frozen=True, slots=True)
class RedisDeadlines:
    """How long a Redis client waits, chosen per use: every network wait has a deadline."""

    # Longest wait for one write to the socket or one reply: past it the command fails
    # (and its connection is dropped) like any other Redis error.
    socket_timeout_s: float
    connect_timeout_s: float
    # A connection idle this long is PINGed before its next command, so a dead one is
    # found before a request waits on it.
    health_check_interval_s: float = 10.0


# The read path: a reply within 2 s, or the reader answers 503 with Retry-After.
READS: Final = RedisDeadlines(socket_timeout_s=2.0, connect_timeout_s=2.0)
# The aggregator's applies. Its largest pipeline (REACTIONS_MAX_BATCH, up to 500,000
# events) is written while Redis runs it, so the write itself can take as long as Redis
# needs for the whole batch: 7-9 us an event, about 1 s for the default 100,000 and 4.5 s
# for the largest. 15 s leaves room for a slower Redis (an AOF rewrite, another member's
# pipeline in between) without timing out a healthy batch, which would be retried forever;
# and it stays well under the 60 s rebalance timeout, so a batch stuck on a frozen
# connection is retried on a new one while the rebalance still waits for it.
APPLIES: Final = RedisDeadlines(socket_timeout_s=15.0, connect_timeout_s=5.0)
# TCP keep-alive finds a dead peer host or a cut network path in 25 s (10 s idle, then 3
# probes 5 s apart) even on a connection nobody writes to. A frozen process still answers
# keep-alives (its kernel does): the socket timeouts and health checks catch that.
KEEPALIVE: Final = {
    option: value
    for name, value in (("TCP_KEEPIDLE", 10), ("TCP_KEEPINTVL", 5), ("TCP_KEEPCNT", 3))
    if (option := getattr(socket, name, None)) is not None
}


def connect_redis(
    url: str, deadlines: RedisDeadlines, *, cluster: bool = False, **options: Any
) -> Redis:
    """A Redis client for `url`, or a Redis Cluster client seeded by it, with deadlines,
    TCP keep-alive and health checks on every connection.

    Every key the services touch in one command shares a hash tag, so the same calls work
    on both; the cluster client is typed as Redis because it answers the same commands.
    """
    options = {
        "socket_timeout": deadlines.socket_timeout_s,
        "socket_connect_timeout": deadlines.connect_timeout_s,
        "socket_keepalive": True,
        "socket_keepalive_options": KEEPALIVE,
        "health_check_interval": deadlines.health_check_interval_s,
        **options,
    }
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
