"""A plain-Python model of shared/lua/apply_batch.lua: the counting rules, written plainly."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from shared.events import (
    DEFAULT_CLIENT_CLOCK_SKEW_MS,
    InvalidEvent,
    ReactionEvent,
    bounded_client_ts,
    decode_event,
    partition_for,
)

# (offset, op "s"/"c", user, reaction, client_ts or None, bound of a stored client_ts or None)
Event = tuple[int, str, str, str, int | None, int | None]


@dataclass
class ApplyResult:
    """What one apply call reports, in the shape the script returns."""

    applied: int = 0
    noop: int = 0
    duplicate: int = 0
    stale: int = 0
    deltas: dict[str, int] = field(default_factory=dict)
    correctives: list[tuple[str, str, int]] = field(default_factory=list)


@dataclass
class ArticleModel:
    """One article's counts, readers (user -> (reaction or '', client_ts)) and fence."""

    counts: Counter[str] = field(default_factory=Counter)
    readers: dict[str, tuple[str, int | None]] = field(default_factory=dict)
    fence: tuple[int, int] | None = None

    def apply(self, partition: int, events: list[Event]) -> ApplyResult:
        """Apply one chunk exactly as the script does; each event's bound is the most a
        stored client_ts counts for against it (its server ts plus the allowed skew)."""
        result = ApplyResult()
        last = self.fence[1] if self.fence and self.fence[0] == partition else -1
        restate: list[str] = []
        top = None
        for event in events:
            offset, _, user, _, ts, _ = event
            if offset <= last:
                result.duplicate += 1
                cur_ts = self.readers.get(user, ("", None))[1]
                stale = ts is not None and cur_ts is not None and ts < cur_ts
            else:
                top = offset
                stale = self._apply_one(event, result)
            if stale and user not in restate:
                restate.append(user)
        if top is not None:
            self.fence = (partition, top)
        result.deltas = {r: d for r, d in result.deltas.items() if d}
        for user in restate:
            reaction, ts = self.readers[user]
            assert ts is not None
            result.correctives.append((user, reaction, ts))
        self.counts = +self.counts
        return result

    def _apply_one(self, event: Event, result: ApplyResult) -> bool:
        """One event above the fence; True when it is stale (older than the stored one)."""
        _, op, user, reaction, ts, bound = event
        cur_reaction, cur_ts = self.readers.get(user, ("", None))
        if bound is not None and cur_ts is not None and cur_ts > bound:
            # Stored before client clocks were bounded, or by an event stamped by a server
            # clock ahead of this one's: it counts, and is kept, as this event's bound.
            cur_ts = bound
            self.readers[user] = (cur_reaction, cur_ts)
        if ts is not None and cur_ts is not None and ts < cur_ts:
            result.stale += 1
            return True
        new_ts = ts if ts is not None else (cur_ts + 1 if cur_ts is not None else None)
        target = reaction if op == "s" else ""
        if target != cur_reaction:
            if cur_reaction:
                self.counts[cur_reaction] -= 1
                result.deltas[cur_reaction] = result.deltas.get(cur_reaction, 0) - 1
            if target:
                self.counts[target] += 1
                result.deltas[target] = result.deltas.get(target, 0) + 1
            result.applied += 1
        else:
            result.noop += 1
        if target == "" and new_ts is None:
            self.readers.pop(user, None)
        else:
            self.readers[user] = (target, new_ts)
        return False


class LogRecord(Protocol):
    """A topic record as the fold needs it (the fault harness's TopicRecord fits)."""

    @property
    def partition(self) -> int: ...

    @property
    def offset(self) -> int: ...

    @property
    def value(self) -> bytes | None: ...

    @property
    def headers(self) -> tuple[tuple[str, bytes], ...]: ...


CORRECTIVE = b"corrective"


@dataclass
class LogFold:
    """Per-article state after folding a topic, and what happened to each record."""

    articles: dict[str, ArticleModel] = field(default_factory=dict)
    decoded: dict[tuple[int, int], ReactionEvent] = field(default_factory=dict)
    dead: list[tuple[LogRecord, str]] = field(default_factory=list)  # (record, reason)
    # (partition, offset) -> "applied" | "noop" | "duplicate" | "stale"
    outcomes: dict[tuple[int, int], str] = field(default_factory=dict)
    unchanged: set[tuple[int, int]] = field(default_factory=set)  # changed nothing at all
    correctives: list[tuple[str, str, str, int]] = field(default_factory=list)
    # Corrective records (header `origin: corrective`) that were not the no-op a corrective
    # must be: (partition, offset) -> what was wrong with it.
    wrong_correctives: dict[tuple[int, int], str] = field(default_factory=dict)


def fold_log(
    records: Iterable[LogRecord],
    *,
    partitions: int | None = None,
    clock_skew_ms: int = DEFAULT_CLIENT_CLOCK_SKEW_MS,
) -> LogFold:
    """Fold topic records (each partition in offset order) the way the aggregator does.

    Undecodable records, and (given the partition count) valid events on another partition
    than their article's, are dead-lettered, not applied; every other record, corrective
    records included, goes through `ArticleModel.apply`, its client_ts bounded by its server
    ts plus `clock_skew_ms`, as is the stored one it is compared with. `correctives` lists the
    (article, user, reaction, client_ts) restatements the aggregator is asked to append; a
    corrective record is checked when the fold reaches it (`wrong_correctives`).
    """
    fold = LogFold()
    for record in records:
        try:
            event = decode_event(record.value)
        except InvalidEvent as exc:
            fold.dead.append((record, exc.reason))
            continue
        if partitions is not None and partition_for(event.article_id, partitions) != (
            record.partition
        ):
            fold.dead.append((record, "wrong_partition"))
            continue
        where = (record.partition, record.offset)
        fold.decoded[where] = event
        article = fold.articles.setdefault(event.article_id, ArticleModel())
        before = article.readers.get(event.user_id)
        op = "s" if event.op == "set" else "c"
        client_ts = bounded_client_ts(event.client_ts, event.ts, clock_skew_ms)
        bound = event.ts + clock_skew_ms
        result = article.apply(
            record.partition,
            [(record.offset, op, event.user_id, event.reaction or "", client_ts, bound)],
        )
        fold.outcomes[where] = next(
            name
            for name, n in (
                ("applied", result.applied),
                ("noop", result.noop),
                ("duplicate", result.duplicate),
                ("stale", result.stale),
            )
            if n
        )
        after = article.readers.get(event.user_id)
        if not result.applied and after == before:
            fold.unchanged.add(where)
        # A corrective restates the reader's state after a stale event (or after a replay
        # met an event older than that state): when it is consumed the reader's state must
        # already be what it restates, or newer if the reader voted since (then it is stale
        # in turn, and restated again). Either way applying it changes nothing.
        if ("origin", CORRECTIVE) in record.headers and (result.applied or after != before):
            fold.wrong_correctives[where] = (
                f"it changed the reader's state from {before} to {after}"
            )
        fold.correctives += [(event.article_id, *c) for c in result.correctives]
    return fold
