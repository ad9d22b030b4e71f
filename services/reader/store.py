"""Tallies from Redis through the micro-cache, rendered once per read as the contract's JSON,
and a reader's own reactions read together with the tallies.

A tally is rendered when it is read from Redis, not when it is served: the plain GET's
body and ETag, and the `"id":{…}` fragment a bulk body is joined from, with a digest of
it. A cached read then costs a lookup and a write of bytes that already exist.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from operator import itemgetter
from typing import Any, Final, NamedTuple

import orjson
from redis.asyncio import Redis, RedisCluster

from services.reader.cache import Tally, TallyCache
from services.reader.responses import etag_of
from services.reader.view import ViewState
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
# The view state (view.py: whether the epoch marker and the replay targets exist), then the
# counts and fence of each article, in one command: redis-py spends about as much on each
# command of a pipeline as on a whole script call of 50 keys. The keys are in different
# slots, so this runs on a single Redis only; a cluster gets a pipeline.
ROWS_SCRIPT: Final = """#!lua flags=no-writes
local rows = {redis.call('EXISTS', KEYS[1]) + 2 * redis.call('EXISTS', KEYS[2])}
for i = 3, #KEYS do rows[i - 1] = redis.call('HMGET', KEYS[i], unpack(ARGV)) end
return rows
"""
# Keys per script call: one call blocks Redis while it runs (about 1 µs a key).
ROWS_PER_CALL: Final = 500
BULK_OPEN: Final = b'{"articles":{'
BULK_CLOSE: Final = b"}}"


class RenderedTally(NamedTuple):
    """One read of an article's tally with every byte the count reads serve from it."""

    tally: Tally
    # The plain GET's body (also each SSE tally event's data) and its ETag.
    body: bytes
    etag: bytes
    # `"article_id":{"counts":…,"total":…,"seq":…}`, as it appears in a bulk body.
    fragment: bytes
    # The counts and fence as Redis gave them: a read that finds them unchanged reuses
    # all of the above instead of parsing and rendering again.
    row: list[Any]


# The fields by position: a C-level getter, where `r.fragment` is a Python property call.
_ETAG: Final = itemgetter(RenderedTally._fields.index("etag"))
_FRAGMENT: Final = itemgetter(RenderedTally._fields.index("fragment"))


def bulk_body(rendered: Sequence[RenderedTally]) -> tuple[bytes, bytes]:
    """The bulk read's body for these tallies, joined from their fragments, and its ETag.

    The ETag is a digest of the articles' own ETags, not of the whole body (a quarter of
    the hashing for 50 ids): each covers its article's id and tally, which is all a
    fragment holds, so the body changes only when this does.
    """
    body = BULK_OPEN + b",".join(map(_FRAGMENT, rendered)) + BULK_CLOSE
    digest = hashlib.blake2b(b"".join(map(_ETAG, rendered)), digest_size=12)
    return body, b'"' + digest.hexdigest().encode() + b'"'


def entry_template(reaction_ids: Sequence[str]) -> bytes:
    """`{"counts":{"like":%d,…},"total":%d,"seq":%d}` for these types, in display order:
    a tally's JSON in one formatting step, byte for byte what orjson makes of the dict."""
    counts = b",".join(orjson.dumps(r).replace(b"%", b"%%") + b":%d" for r in reaction_ids)
    return b'{"counts":{' + counts + b'},"total":%d,"seq":%d}'


class TallyStore:
    """Tallies from Redis through the micro-cache, rendered as the contract's JSON."""

    def __init__(
        self,
        redis: Redis,
        reactions: ReactionSet,
        cache_ttl: float,
        entries: int,
        view: ViewState,
    ) -> None:
        self.redis = redis
        self.view = view
        self.reaction_ids = reactions.ids
        self._configured = frozenset(reactions.ids)
        # The fence is read with the counts, from the same hash: the seq of a tally is the
        # last event its counts include.
        self._fields = [*self.reaction_ids, FENCE_FIELD]
        self._template = entry_template(self.reaction_ids)
        self._cluster = isinstance(redis, RedisCluster)
        self._rows = redis.register_script(ROWS_SCRIPT)
        self.cache: TallyCache[RenderedTally] = TallyCache(
            self._load, ttl=cache_ttl, max_entries=entries
        )

    async def _load(self, article_ids: Sequence[str]) -> list[RenderedTally]:
        rows = await self._read_rows(article_ids)
        peek = self.cache.peek
        rendered = []
        for article_id, row in zip(article_ids, rows, strict=True):
            # Most articles have not changed since their entry expired: same bytes.
            last = peek(article_id)
            rendered.append(
                last if last is not None and last.row == row else self._render(article_id, row)
            )
        return rendered

    async def _read_rows(self, article_ids: Sequence[str]) -> list[list[Any]]:
        """The articles' rows, read with the view state (ViewRebuilding: not to be served)."""
        keys = [counts_key(article_id) for article_id in article_ids]
        view = self.view.keys
        if len(keys) <= ROWS_PER_CALL and not self._cluster:
            reply = await self._rows(keys=[*view, *keys], args=self._fields)
            self.view.check(reply[0])
            return list(reply[1:])
        pipe = self.redis.pipeline(transaction=False)
        if self._cluster:
            self.view.ask(pipe)
            for key in keys:
                pipe.hmget(key, self._fields)
            epoch, replaying, *rows = await pipe.execute()
            self.view.answer(epoch, replaying)
            return rows
        for start in range(0, len(keys), ROWS_PER_CALL):
            chunk = keys[start : start + ROWS_PER_CALL]
            await self._rows(keys=[*view, *chunk], args=self._fields, client=pipe)
        rows = []
        for state, *chunk_rows in await pipe.execute():
            self.view.check(state)
            rows += chunk_rows
        return rows

    def _render(self, article_id: str, row: list[Any]) -> RenderedTally:
        counts = parse_counts(row[:-1])
        tally = Tally(counts, parse_fence_offset(row[-1]))
        entry = self._template % (*counts, sum(counts), tally.seq)
        # Article ids are ASCII with nothing JSON escapes: quoted as they are.
        quoted = b'"' + article_id.encode() + b'"'
        body = b'{"article_id":' + quoted + b"," + entry[1:]
        return RenderedTally(tally, body, etag_of(body).encode(), quoted + b":" + entry, row)

    async def snapshot(
        self, article_ids: Sequence[str], reader_id: str
    ) -> tuple[list[Tally], list[str | None]]:
        """Each article's tally and the reader's reaction, read together, in one round trip.

        Not from the cache: the widget compares `mine` and `seq` with its own votes, so the
        counts, the seq and `mine` of an article must come from one moment.
        """
        pipe = self.redis.pipeline(transaction=False)
        self.view.ask(pipe)
        for article_id in article_ids:
            keys = (counts_key(article_id), readers_key(article_id))
            pipe.eval(SNAPSHOT_SCRIPT, 2, *keys, reader_id, *self._fields)
        epoch, replaying, *rows = await pipe.execute()
        self.view.answer(epoch, replaying)
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

    def fresh(self, article_id: str) -> RenderedTally | None:
        """The article's rendered tally when the cache holds a fresh one (no waiting)."""
        return self.cache.fresh(article_id)

    async def tally(self, article_id: str) -> RenderedTally:
        """One article's rendered tally, through the cache."""
        return self.cache.fresh(article_id) or (await self.cache.get_many([article_id]))[0]

    async def tallies(self, article_ids: Sequence[str]) -> list[RenderedTally]:
        """The rendered tally of each distinct article, through the cache."""
        return await self.cache.get_many(article_ids)

    async def bulk(self, article_ids: Sequence[str]) -> tuple[bytes, bytes]:
        """The bulk read's body and ETag for these distinct articles."""
        return bulk_body(await self.cache.get_many(article_ids))

    async def render(self, article_id: str) -> bytes:
        """The plain GET's JSON body for one article (also each SSE tally event's data)."""
        return (await self.tally(article_id)).body
