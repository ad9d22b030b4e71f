"""Tallies from Redis through the micro-cache, rendered as the contract's JSON."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from redis.asyncio import Redis

from services.reader.cache import Counts, TallyCache
from shared.reactions import ReactionSet
from shared.tallies import counts_key, parse_counts, parse_reader_state, readers_key


class TallyStore:
    """Tallies from Redis through the micro-cache, rendered as the contract's JSON."""

    def __init__(
        self, redis: Redis, reactions: ReactionSet, cache_ttl: float, entries: int
    ) -> None:
        self.redis = redis
        self.reaction_ids = reactions.ids
        self.cache = TallyCache(self._load, ttl=cache_ttl, max_entries=entries)

    async def _load(self, article_ids: Sequence[str]) -> list[Counts]:
        fields = list(self.reaction_ids)
        if len(article_ids) == 1:
            rows = [await self.redis.hmget(counts_key(article_ids[0]), fields)]
        else:
            pipe = self.redis.pipeline(transaction=False)
            for article_id in article_ids:
                pipe.hmget(counts_key(article_id), fields)
            rows = await pipe.execute()
        return [parse_counts(row) for row in rows]

    async def snapshot(
        self, article_ids: Sequence[str], user_id: str
    ) -> tuple[list[Counts], list[str | None]]:
        """Counts and the reader's reaction of each article, read together in one round trip.

        Not from the cache: the widget compares `mine` with the counts to know whether they
        include its reader's vote, so both must come from the same moment. One article is
        read in MULTI (its keys share a slot); several with each pair adjacent.
        """
        fields = list(self.reaction_ids)
        pipe = self.redis.pipeline(transaction=len(article_ids) == 1)
        for article_id in article_ids:
            pipe.hmget(counts_key(article_id), fields)
            pipe.hget(readers_key(article_id), user_id)
        replies = await pipe.execute()
        counts: list[Counts] = []
        mines: list[str | None] = []
        for row, raw in zip(replies[::2], replies[1::2], strict=True):
            counts.append(parse_counts(row))
            state = parse_reader_state(raw)
            mines.append(state.reaction or None if state else None)
        return counts, mines

    async def entries(
        self, article_ids: Sequence[str], user_id: str | None
    ) -> list[dict[str, Any]]:
        """Counts, total (and `mine` with a user) of each distinct article."""
        mines: list[str | None] = []
        if user_id is None:
            all_counts = await self.cache.get_many(article_ids)
        else:
            all_counts, mines = await self.snapshot(article_ids, user_id)
        out = []
        for i, counts in enumerate(all_counts):
            entry: dict[str, Any] = {
                "counts": dict(zip(self.reaction_ids, counts, strict=True)),
                "total": sum(counts),
            }
            if user_id is not None:
                entry["mine"] = mines[i]
            out.append(entry)
        return out

    async def render(self, article_id: str, user_id: str | None = None) -> bytes:
        """The plain GET's JSON body for one article."""
        (entry,) = await self.entries([article_id], user_id)
        return orjson.dumps({"article_id": article_id, **entry})
