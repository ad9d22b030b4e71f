"""Step 1 of a batch: records become apply-script lines grouped by article; the records that
are not valid events (or sit on another partition than their article's) are set aside with
the reason, for the dead-letter topic."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord

from services.aggregator.retry import BatchContext
from services.aggregator.scripts import apply_event_line
from shared.events import InvalidEvent, decode_fields, partition_for
from shared.tallies import TREND_BUCKET_SECONDS, TREND_HORIZON_MINUTES

Batch = dict[TopicPartition, list[ConsumerRecord]]


@dataclass
class ArticleBatch:
    """One article's events of a batch, as apply-script lines, and its partition."""

    partition: int
    lines: list[str] = field(default_factory=list)
    oldest_ts: int = 0
    # Where the minute of the lines' server ts changes: (first line, minute), None for votes
    # cast before trending's longest window. Trending counts a vote in the minute it was
    # cast, however late it is applied (a backlog, a replay).
    minutes: list[tuple[int, int | None]] = field(default_factory=list)


@dataclass
class DecodedBatch:
    """A batch ready for Redis: events grouped by article, invalid records, positions."""

    positions: dict[TopicPartition, int]  # the next offset to read, per partition
    by_article: dict[str, ArticleBatch]
    dead: list[tuple[ConsumerRecord, InvalidEvent]]
    size: int
    first: dict[TopicPartition, int] = field(default_factory=dict)  # for log lines

    def only(self, owned: set[TopicPartition]) -> DecodedBatch:
        """The part of the batch on partitions this member still owns."""
        if all(tp in owned for tp in self.positions):
            return self
        partitions = {tp.partition for tp in owned}
        return DecodedBatch(
            {tp: n for tp, n in self.positions.items() if tp in owned},
            {a: b for a, b in self.by_article.items() if b.partition in partitions},
            [(r, e) for r, e in self.dead if r.partition in partitions],
            self.size,
            {tp: n for tp, n in self.first.items() if tp in owned},
        )

    def context(self, topic: str) -> BatchContext:
        """Topic, partitions and offset ranges of the batch, for its log lines."""
        return BatchContext.of_ranges(
            topic, {tp.partition: (self.first[tp], n - 1) for tp, n in self.positions.items()}
        )


class Decoder:
    """Decodes batches of one topic; remembers the partition of the articles it has seen.

    An event's client_ts counts as at most its server ts plus `clock_skew_ms`, whoever
    produced it (ingest bounds it too), and the same on every replay.
    """

    def __init__(self, partitions: int, clock_skew_ms: int) -> None:
        self.partitions = partitions
        self.clock_skew_ms = clock_skew_ms
        self._partition_of: dict[str, int] = {}

    def decode(self, batch: Batch, into: DecodedBatch | None = None) -> DecodedBatch:
        """Group valid events by article as apply-script lines; collect the invalid records.

        With `into`, the records (fetched after those already in it) extend that batch.
        """
        if into is None:
            into = DecodedBatch({}, {}, [], 0)
        by_article, dead = into.by_article, into.dead
        skew = self.clock_skew_ms
        bucket_ms = TREND_BUCKET_SECONDS * 1000
        horizon = int(time.time()) // TREND_BUCKET_SECONDS - TREND_HORIZON_MINUTES
        for tp, records in batch.items():
            for record in records:
                try:
                    # Fields, not a ReactionEvent: building one per event costs as much as
                    # the validation, and only the apply line is needed.
                    _, _, article_id, user_id, reaction, ts, client_ts = decode_fields(record.value)
                except InvalidEvent as exc:
                    dead.append((record, exc))
                    continue
                article = by_article.get(article_id)
                if article is None:
                    if self._expected_partition(article_id) != tp.partition:
                        # Its fence lives in another partition's offsets: applying it here
                        # could skip or repeat events. Only a non-conforming producer does this.
                        dead.append((record, InvalidEvent("wrong_partition", article_id)))
                        continue
                    article = by_article[article_id] = ArticleBatch(tp.partition)
                    article.oldest_ts = ts
                elif article.partition != tp.partition:
                    dead.append((record, InvalidEvent("wrong_partition", article_id)))
                    continue
                bound = ts + skew
                if client_ts is not None and client_ts > bound:
                    client_ts = bound
                cast = ts // bucket_ms
                minute = cast if cast >= horizon else None
                if not article.minutes or article.minutes[-1][1] != minute:
                    article.minutes.append((len(article.lines), minute))
                line = apply_event_line(record.offset, user_id, reaction, client_ts, bound)
                article.lines.append(line)
        for tp, records in batch.items():
            if records:
                into.first.setdefault(tp, records[0].offset)
                into.positions[tp] = records[-1].offset + 1
                into.size += len(records)
        return into

    def _expected_partition(self, article_id: str) -> int:
        partition = self._partition_of.get(article_id)
        if partition is None:
            if len(self._partition_of) > 200_000:
                self._partition_of.clear()  # a bounded cache of murmur2 results
            partition = self._partition_of[article_id] = partition_for(article_id, self.partitions)
        return partition
