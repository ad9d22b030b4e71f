"""Tallies from Redis through the micro-cache, rendered as the contract's JSON, and a
reader's own reactions read together with the tallies."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import orjson
from redis.asyncio import Redis

from services.reader.cache import Tally, TallyCache
from shared.reactions import ReactionSet
from shared.tallies import (
    FENCE_FIELD,
    counts_key,
    parse_counts,
    parse_fence_offset,
    parse_reader_state,
    readers_key,
)

# One article's counts, fence and one reader's entry in one atomic step: the keys share the
# article's hash tag, so this also runs on Redis Cluster. Read-only (it may run on a
# replica, and while Redis refuses writes for lack of memory).
SNAPSHOT_SCRIPT: Final = """#!lua flags=no-writes
local row = redis.call('HMGET', KEYS[1], unpack(ARGV, 2))
row[#row + 1] = redis.call('HGET', KEYS[2], ARGV[1])
return row
"""


class TallyStore:
    """Tallies from Redis through the micro-cache, rendered as the contract's JSON."""

    def __init__(
        self, redis: Redis, reactions: ReactionSet, cache_ttl: float, entries: int
    ) -> None:
        self.redis = redis
        self.reaction_ids = reactions.ids
        self._configured = frozenset(reactions.ids)
        # The fence is read with the counts, from the same hash: the seq of a tally is the
        # last event its counts include.
        self._fields = [*self.reaction_ids, FENCE_FIELD]
        self.cache = TallyCache(self._load, ttl=cache_ttl, max_entries=entries)

    async def _load(self, article_ids: Sequence[str]) -> list[Tally]:
        if len(article_ids) == 1:
            rows = [await self.redis.hmget(counts_key(article_ids[0]), self._fields)]
        else:
            pipe = self.redis.pipeline(transaction=False)
            for article_id in article_ids:
                pipe.hmget(counts_key(article_id), self._fields)
            rows = await pipe.execute()
        return [Tally(parse_counts(row[:-1]), parse_fence_offset(row[-1])) for row in rows]

    async def snapshot(
        self, article_ids: Sequence[str], reader_id: str
    ) -> tuple[list[Tally], list[str | None]]:
        """Each article's tally and the reader's reaction, read together, in one round trip.

        Not from the cache: the widget compares `mine` and `seq` with its own votes, so the
        counts, the seq and `mine` of an article must come from one moment.
        """
        pipe = self.redis.pipeline(transaction=False)
        for article_id in article_ids:
            keys = (counts_key(article_id), readers_key(article_id))
            pipe.eval(SNAPSHOT_SCRIPT, 2, *keys, reader_id, *self._fields)
        rows = await pipe.execute()
        tallies = [Tally(parse_counts(row[:-2]), parse_fence_offset(row[-2])) for row in rows]
        states = [parse_reader_state(row[-1]) for row in rows]
        # A type this reader is not configured with (counted by a newer ingest) is in none
        # of its counts, so it is not shown as the reader's either.
        mines = [
            state.reaction if state and state.reaction in self._configured else None
            for state in states
        ]
        return tallies, mines

    def entry(self, tally: Tally) -> dict[str, Any]:
        """The contract's JSON of one tally: zero-filled counts in display order, total, seq."""
        counts = tally.counts
        return {
            "counts": dict(zip(self.reaction_ids, counts, strict=True)),
            "total": sum(counts),
            "seq": tally.seq,
        }

    async def entries(self, article_ids: Sequence[str]) -> list[dict[str, Any]]:
        """Counts, total and seq of each distinct article, through the cache."""
        return [self.entry(tally) for tally in await self.cache.get_many(article_ids)]

    async def render(self, article_id: str) -> bytes:
        """The plain GET's JSON body for one article (also each SSE tally event's data)."""
        (entry,) = await self.entries([article_id])
        return orjson.dumps({"article_id": article_id, **entry})
