"""A plain-Python model of shared/lua/apply_batch.lua: the counting rules, written plainly."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from shared.events import InvalidEvent, ReactionEvent, decode_event, partition_for

# (offset, op "s"/"c", user, reaction, client_ts or None)
Event = tuple[int, str, str, str, int | None]


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
        """Apply one chunk exactly as the script does."""
        result = ApplyResult()
        last = self.fence[1] if self.fence and self.fence[0] == partition else -1
        restate: list[str] = []
        top = None
        for offset, op, user, reaction, ts in events:
            cur_reaction, cur_ts = self.readers.get(user, ("", None))
            older = ts is not None and cur_ts is not None and ts < cur_ts
            if offset <= last:
                result.duplicate += 1
                if older and user not in restate:
                    restate.append(user)
                continue
            top = offset
            if older:
                result.stale += 1
                if user not in restate:
                    restate.append(user)
                continue
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
        if top is not None:
            self.fence = (partition, top)
        result.deltas = {r: d for r, d in result.deltas.items() if d}
        for user in restate:
            reaction, ts = self.readers[user]
            assert ts is not None
            result.correctives.append((user, reaction, ts))
        self.counts = +self.counts
        return result


class LogRecord(Protocol):
    """A topic record as the fold needs it (the fault harness's TopicRecord fits)."""

    @property
    def partition(self) -> int: ...

    @property
    def offset(self) -> int: ...

    @property
    def value(self) -> bytes | None: ...


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


def fold_log(records: Iterable[LogRecord], *, partitions: int | None = None) -> LogFold:
    """Fold topic records (each partition in offset order) the way the aggregator does.

    Undecodable records, and (given the partition count) valid events on another partition
    than their article's, are dead-lettered, not applied; every other record, corrective
    records included, goes through `ArticleModel.apply`. `correctives` lists the
    (article, user, reaction, client_ts) restatements the aggregator is asked to append.
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
        result = article.apply(
            record.partition,
            [(record.offset, op, event.user_id, event.reaction or "", event.client_ts)],
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
        if not result.applied and article.readers.get(event.user_id) == before:
            fold.unchanged.add(where)
        fold.correctives += [(event.article_id, *c) for c in result.correctives]
    return fold
