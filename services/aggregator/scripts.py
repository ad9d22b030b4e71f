"""How the aggregator calls Redis: its Lua scripts (`shared/lua/`), their arguments and
replies, and the pipelines that carry many calls in one round trip."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, Final, cast

import hiredis
from redis.asyncio import Redis, RedisCluster
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from shared.tallies import (
    TREND_BUCKET_MAX,
    TREND_BUCKET_SECONDS,
    TREND_TTL_SECONDS,
    article_slot,
    counts_key,
    mark_key,
    readers_key,
    trend_keys,
)

# Events per apply call: bounded, because a Lua script blocks Redis while it runs and
# cannot be killed once it has written.
MAX_EVENTS_PER_CALL: Final = 500
# What a lost connection raises: the replies not read yet are unknown.
LOST_CONNECTION: Final = (RedisConnectionError, RedisTimeoutError, OSError)
# On Redis Cluster, how many script calls are in flight at once (its pipelines refuse scripts).
CLUSTER_SCRIPT_CONCURRENCY: Final = 64  # well under the client pool (100 per node)


# One script call: its keys and its arguments.
ScriptCall = tuple[Sequence[str], Sequence[str | int]]


def _script(redis: Redis, name: str) -> AsyncScript:
    source = resources.files("shared").joinpath(f"lua/{name}.lua").read_text()
    return redis.register_script(source)


def apply_script(redis: Redis) -> AsyncScript:
    """The fenced batch-apply script, registered on `redis` (EVALSHA with EVAL fallback)."""
    return _script(redis, "apply_batch")


def positions_script(redis: Redis) -> AsyncScript:
    """The script writing resume positions only under an unchanged epoch marker (and ending
    the replay of partitions they take past their targets)."""
    return _script(redis, "positions")


def epoch_script(redis: Redis) -> AsyncScript:
    """The script creating a missing epoch marker together with the replay targets."""
    return _script(redis, "epoch")


def trend_script(redis: Redis) -> AsyncScript:
    """The script adding one batch's net deltas of one reaction to a minute's buckets."""
    return _script(redis, "trend_add")


def trend_calls(
    trends: Mapping[str, Sequence[str | int]], minute: int, now: int
) -> list[ScriptCall]:
    """One `trend_script` call per reaction: its (article, delta, ...) pairs to the minute's
    bucket and to the rollups holding it, kept TREND_TTL_SECONDS from that minute (`now` is
    the current one)."""
    ttl = max(TREND_BUCKET_SECONDS, TREND_TTL_SECONDS - (now - minute) * TREND_BUCKET_SECONDS)
    return [
        (trend_keys(reaction, minute), (ttl, TREND_BUCKET_MAX, *pairs))
        for reaction, pairs in trends.items()
    ]


def apply_event_line(
    offset: int,
    user_id: str,
    reaction: str | None,
    client_ts: int | None,
    bound: int | None = None,
) -> str:
    """One event as the apply script reads it: a set, or a clear when `reaction` is None;
    `bound` is the most a stored client_ts counts for against it (its server ts plus the
    allowed clock skew; None: no bound).

    (Ids and reaction names never contain tabs or newlines: their patterns forbid them.)
    """
    cts = "" if client_ts is None else client_ts
    return f"{offset}\t{user_id}\t{reaction or ''}\t{cts}\t{'' if bound is None else bound}\n"


def apply_keys(article_id: str) -> tuple[str, str, str]:
    """The keys of an article's apply call: counts, readers and its slot's apply marks."""
    return counts_key(article_id), readers_key(article_id), mark_key(article_slot(article_id))


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


@dataclass(frozen=True, slots=True)
class MarkRefusal:
    """The apply script wrote nothing: the slot's mark was this one, not the one expected."""

    count: int
    writer: str


def parse_mark(raw: bytes | str | None) -> tuple[int, str]:
    """A stored apply mark, "count:writer", as (count, writer); (0, "") when never written."""
    if not raw:
        return 0, ""
    text = raw.decode() if isinstance(raw, bytes) else raw
    count, _, writer = text.partition(":")
    return int(count), sys.intern(writer)  # one writer id per round trip: shared


def mark_text(count: int, writer: str) -> str:
    """An apply mark as stored ("" when never written)."""
    return f"{count}:{writer}" if count else ""


def parse_apply_reply(raw: bytes | str) -> ApplyReply | MarkRefusal:
    """Decode the apply script's reply (three tab-separated lines, or a refusal)."""
    text = raw.decode() if isinstance(raw, bytes) else raw
    if text.startswith("!"):
        return MarkRefusal(*parse_mark(text[1:]))
    outcome, deltas, corrective = text.split("\n")
    applied, noop, duplicate, stale = outcome.split("\t")
    # Once per call: no comprehension where there is nothing to parse.
    d = deltas.split("\t") if deltas else ()
    c = corrective.split("\t") if corrective else ()
    return ApplyReply(
        int(applied),
        int(noop),
        int(duplicate),
        int(stale),
        {d[i]: int(d[i + 1]) for i in range(0, len(d), 2)} if d else {},
        [(c[i], c[i + 1], int(c[i + 2])) for i in range(0, len(c), 3)] if c else [],
    )


async def evalsha_many(redis: Redis, sha: str, calls: Sequence[ScriptCall]) -> list[Any]:
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


async def send_applies(
    redis: Redis,
    sha: str,
    calls: Sequence[ScriptCall],
    chains: Sequence[Hashable],
) -> list[Any]:
    """Run apply calls in one round trip; per call its reply, its error or None.

    `chains[i]` names the chain of call i (its slot and partition): the calls of a chain
    run in the order given, each expecting the mark the one before left. The outcome of a
    call is its reply, the ResponseError Redis answered, the connection error that left it
    unknown, or None when it was not sent (on Redis Cluster a chain stops at its first call
    that did not apply: the later ones would be refused).
    """
    if not isinstance(redis, RedisCluster):
        commands = [evalsha_command(sha, keys, args) for keys, args in calls]
        return await pipeline_outcomes(redis, commands)
    outcomes: list[Any] = [None] * len(calls)
    by_chain: dict[Hashable, list[int]] = {}
    for i, chain in enumerate(chains):
        by_chain.setdefault(chain, []).append(i)
    slots = asyncio.Semaphore(CLUSTER_SCRIPT_CONCURRENCY)

    async def in_order(indexes: list[int]) -> None:
        async with slots:
            for i in indexes:
                keys, args = calls[i]
                try:
                    outcomes[i] = reply = await redis.evalsha(sha, len(keys), *keys, *args)
                except (RedisError, OSError) as exc:
                    outcomes[i] = exc
                    return
                if reply[:1] in (b"!", "!"):
                    return

    await asyncio.gather(*(in_order(indexes) for indexes in by_chain.values()))
    return outcomes


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
    EVALSHA calls cost the aggregator more CPU than decoding the events. Raises a connection
    error as it comes, else the first error reply after reading every reply.
    """
    replies = await pipeline_outcomes(redis, commands)
    for reply in replies:
        if isinstance(reply, LOST_CONNECTION):
            raise reply
    for reply in replies:
        if isinstance(reply, ResponseError):
            raise reply
    return replies


async def pipeline_outcomes(
    redis: Redis, commands: Sequence[tuple[str | int | bytes, ...]]
) -> list[Any]:
    """`run_pipelined`, but every outcome in order: a reply, or the ResponseError Redis
    answered, or, for every reply not read when the connection failed, that error."""
    packed = b"".join(hiredis.pack_command(cast(Any, command)) for command in commands)
    pool = redis.connection_pool
    connection = await pool.get_connection()  # type: ignore[no-untyped-call]
    replies: list[Any] = []
    try:
        await connection.send_packed_command(packed, check_health=False)
        for _ in commands:
            try:
                replies.append(await connection.read_response())
            except ResponseError as exc:
                replies.append(exc)
    except LOST_CONNECTION as exc:
        # The replies left unread would be taken for the next command's.
        await connection.disconnect()
        replies += [exc] * (len(commands) - len(replies))
    except BaseException:
        await connection.disconnect()
        raise
    finally:
        await pool.release(connection)
    return replies
