"""The apply loop: decode → group by article → one fenced Lua call per article → notify → commit.

`BatchApplier.apply` is the hot path, shared by the live consumer group (`Aggregator`) and
the `rebuild` command. Order inside one batch, and why:

1. decode every record; undecodable ones go to the dead-letter topic (acknowledged before
   the position moves past them, so none is lost);
2. one non-transactional pipeline with one fenced Lua call per article chunk — the fence
   makes a retry of a half-applied pipeline, a replay or a zombie consumer harmless;
3. corrective records for stale events, acknowledged by Kafka before the position moves;
4. one more pipeline: resume positions (only now, so they never run ahead of the applies,
   and only if the Redis epoch marker is unchanged, so never onto an emptied Redis),
   trending deltas and one PUBLISH of the changed article ids;
5. the Kafka commit (for lag tooling; Redis positions decide where to resume).

The live loop overlaps batches: N+1 is fetched and decoded while N is in Redis, and N's
steps 4-5 run while N+1's events are applied (see `Aggregator.run`).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Final, TypeVar

import orjson
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from aiokafka.structs import ConsumerRecord
from redis.asyncio import Redis, RedisCluster
from redis.exceptions import NoScriptError, RedisError

from services.aggregator import metrics
from services.aggregator.config import AggregatorSettings
from services.aggregator.scripts import (
    MAX_EVENTS_PER_CALL,
    ApplyReply,
    apply_event_line,
    apply_script,
    evalsha_command,
    evalsha_many,
    parse_apply_reply,
    positions_script,
    run_pipelined,
    trend_script,
)
from shared.events import InvalidEvent, ReactionEvent, decode_fields, partition_for, record_key
from shared.kafka import new_producer
from shared.logs import get_logger
from shared.tallies import (
    CHANGES_CHANNEL,
    TREND_BUCKET_SECONDS,
    TREND_TTL_SECONDS,
    counts_key,
    epoch_key,
    position_key,
    readers_key,
    trend_key,
)

log = get_logger(__name__)

T = TypeVar("T")
Batch = dict[TopicPartition, list[ConsumerRecord]]
ALL: Final = "all"
# Records decoded at a time while a batch is in Redis: small enough that the event loop
# returns to that batch's round trips often, large enough to amortise getmany.
FETCH_CHUNK: Final = 500


class RedisLostData(Exception):
    """The Redis epoch marker vanished or changed under a running aggregator: Redis was
    wiped or replaced (restarted without its AOF, flushed, failed over to an empty node).
    Every assigned partition must be replayed; the batch in hand is dropped."""


class BatchAbandoned(Exception):
    """Shutdown was requested while a batch waited on Redis or Kafka.

    Nothing after the failed step was recorded (no position, no commit), so the batch is
    read again by whoever owns the partition next; the fences make that safe.
    """


@dataclass
class BatchReport:
    """What one applied batch did; positions are the next offsets to read per partition."""

    positions: dict[TopicPartition, int]
    outcomes: dict[str, int] = field(default_factory=dict)
    changed: list[str] = field(default_factory=list)
    correctives: int = 0
    # For the finishing step: every article applied to, and the trending deltas.
    articles: list[str] = field(default_factory=list)
    trends: dict[str, list[str | int]] = field(default_factory=dict)


@dataclass
class _ArticleBatch:
    partition: int
    lines: list[str] = field(default_factory=list)
    oldest_ts: int = 0


@dataclass
class DecodedBatch:
    """A batch ready for Redis: events grouped by article, invalid records, positions."""

    positions: dict[TopicPartition, int]
    by_article: dict[str, _ArticleBatch]
    dead: list[tuple[ConsumerRecord, InvalidEvent]]
    size: int

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
        )


class BatchApplier:
    """Applies batches of records to the Redis view; used by the live loop and by `rebuild`."""

    def __init__(
        self,
        redis: Redis,
        producer: Any,
        *,
        topic: str,
        dlq_topic: str,
        partitions: int,
        reactions: frozenset[str],
        stop: asyncio.Event,
        side_effects: bool = True,
    ) -> None:
        self.redis = redis
        # The Redis epoch marker seen by `check_epoch`, which the live aggregator calls at
        # start: from then on positions are written only under that epoch. (`rebuild` does
        # not call it: it starts from nothing anyway.)
        self.epoch: bytes | str | None = None
        self.producer = producer
        self.topic = topic
        self.dlq_topic = dlq_topic
        self.partitions = partitions
        self.reactions = reactions
        self.stop = stop
        # `rebuild` replays a log whose dead letters and correctives were written live, and
        # its history is not news: no DLQ, correctives, trending or notifications then.
        self.side_effects = side_effects
        self._apply = apply_script(redis)
        self._trend = trend_script(redis)
        self._positions = positions_script(redis)
        self._partition_of: dict[str, int] = {}

    async def load_scripts(self) -> None:
        """Load the Lua scripts so the pipelines can call them by SHA."""
        await self.retry(lambda: self.redis.script_load(self._apply.script), "script_load")
        await self.retry(lambda: self.redis.script_load(self._trend.script), "script_load")
        await self.retry(lambda: self.redis.script_load(self._positions.script), "script_load")

    async def check_epoch(self) -> None:
        """Raise RedisLostData when the Redis epoch marker is not the one seen before.

        The marker is created once per Redis data set; a wiped Redis has none (the first
        member to notice creates a new one, and every member sees a change).
        """
        key = epoch_key(self.topic)
        current = await self.redis.get(key)
        if current is None:
            await self.redis.set(key, uuid.uuid4().hex, nx=True)
            current = await self.redis.get(key)
        seen, self.epoch = self.epoch, current
        if seen is not None and current != seen:
            raise RedisLostData(f"epoch {seen!r} became {current!r}")

    async def apply(self, batch: Batch) -> BatchReport:
        """Decode and apply one batch (each partition's records in offset order)."""
        return await self.apply_decoded(self.decode(batch))

    async def apply_decoded(self, decoded: DecodedBatch) -> BatchReport:
        """Apply a decoded batch and record its positions."""
        report = await self.apply_events(decoded)
        await self.finish(report, self.epoch)
        return report

    async def apply_events(self, decoded: DecodedBatch) -> BatchReport:
        """Steps 1-3 of a batch: dead letters, the fenced applies, correctives."""
        started = time.perf_counter()
        report = BatchReport(decoded.positions, articles=list(decoded.by_article))
        by_article, dead = decoded.by_article, decoded.dead
        if dead:
            await self.retry(lambda: self._dead_letter(dead), "dead_letter")
        results = await self.retry(lambda: self._apply_articles(by_article), "apply")

        outcomes = dict.fromkeys(("applied", "noop", "duplicate", "stale"), 0)
        outcomes["dead_lettered"] = len(dead)
        trends: dict[str, list[str | int]] = defaultdict(list)
        correctives: list[tuple[int, ReactionEvent]] = []
        for (article_id, article), reply in zip(by_article.items(), results, strict=True):
            outcomes["applied"] += reply.applied
            outcomes["noop"] += reply.noop
            outcomes["duplicate"] += reply.duplicate
            outcomes["stale"] += reply.stale
            if reply.deltas:
                report.changed.append(article_id)
                for reaction, delta in reply.deltas.items():
                    trends[reaction] += (article_id, delta)
                net = sum(reply.deltas.values())
                if net:
                    trends[ALL] += (article_id, net)
            for user, reaction, ts in reply.correctives:
                event = ReactionEvent.new(
                    "set" if reaction else "clear", article_id, user, reaction or None, ts
                )
                correctives.append((article.partition, event))
        report.outcomes = outcomes
        report.trends = trends
        if correctives and self.side_effects:
            await self.retry(lambda: self._append_correctives(correctives), "corrective")
            report.correctives = len(correctives)

        applied_at = time.time()
        for article in by_article.values():
            metrics.END_TO_END_SECONDS.observe(max(0.0, applied_at - article.oldest_ts / 1000))
        for outcome, n in outcomes.items():
            if n:
                metrics.EVENTS.labels(outcome).inc(n)
        if report.correctives:
            metrics.CORRECTIVES.inc(report.correctives)
        metrics.BATCH_SIZE.observe(decoded.size)
        metrics.APPLY_SECONDS.observe(time.perf_counter() - started)
        return report

    async def finish(self, report: BatchReport, epoch: bytes | str | None) -> None:
        """Step 4 of a batch: positions (under `epoch`, when given), trending, notification."""
        await self.retry(lambda: self._finish(report, epoch), "finish")

    async def forget(self, articles: list[str]) -> None:
        """Delete articles applied to a Redis that lost its data: the replay rebuilds them.

        Their fences would otherwise hide every earlier event from that replay. Only the
        member owning an article's partition writes its keys, so nothing else is lost.
        """
        keys = [key for a in articles for key in (counts_key(a), readers_key(a))]
        for start in range(0, len(keys), 1000):
            await self.redis.delete(*keys[start : start + 1000])

    def decode(self, batch: Batch, into: DecodedBatch | None = None) -> DecodedBatch:
        """Group valid events by article as apply-script lines; collect the invalid records.

        With `into`, the records (fetched after those already in it) extend that batch.
        """
        if into is None:
            into = DecodedBatch({}, {}, [], 0)
        by_article, dead = into.by_article, into.dead
        reactions = self.reactions
        for tp, records in batch.items():
            for record in records:
                try:
                    # Fields, not a ReactionEvent: building one per event costs as much as
                    # the validation, and only the apply line is needed.
                    _, _, article_id, user_id, reaction, ts, client_ts = decode_fields(
                        record.value, reactions
                    )
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
                    article = by_article[article_id] = _ArticleBatch(tp.partition)
                    article.oldest_ts = ts
                elif article.partition != tp.partition:
                    dead.append((record, InvalidEvent("wrong_partition", article_id)))
                    continue
                article.lines.append(apply_event_line(record.offset, user_id, reaction, client_ts))
        for tp, records in batch.items():
            if records:
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

    async def _apply_articles(self, by_article: dict[str, _ArticleBatch]) -> list[ApplyReply]:
        """One round trip, one fenced EVALSHA per article chunk; replies merged per article."""
        calls: list[tuple[tuple[str, str], tuple[int, str]]] = []
        chunks: list[int] = []
        step = MAX_EVENTS_PER_CALL
        for article_id, article in by_article.items():
            keys = (counts_key(article_id), readers_key(article_id))
            lines = article.lines
            for start in range(0, len(lines), step):
                calls.append((keys, (article.partition, "".join(lines[start : start + step]))))
            chunks.append((len(lines) + step - 1) // step)
        try:
            replies = await evalsha_many(self.redis, self._apply.sha, calls)
        except NoScriptError:
            await self.redis.script_load(self._apply.script)  # Redis restarted empty
            raise
        merged: list[ApplyReply] = []
        i = 0
        for n in chunks:
            first = parse_apply_reply(replies[i])
            for extra in replies[i + 1 : i + n]:
                first.merge(parse_apply_reply(extra))
            merged.append(first)
            i += n
        return merged

    async def _dead_letter(self, dead: list[tuple[ConsumerRecord, InvalidEvent]]) -> None:
        if not self.side_effects:
            return
        sends = []
        for record, exc in dead:
            log.warning(
                "dead_letter",
                topic=record.topic,
                partition=record.partition,
                offset=record.offset,
                reason=exc.reason,
                detail=exc.detail[:200],
            )
            headers = [
                *(record.headers or ()),
                ("reason", exc.reason.encode()),
                ("detail", exc.detail[:1000].encode()),
                ("source_topic", record.topic.encode()),
                ("source_partition", str(record.partition).encode()),
                ("source_offset", str(record.offset).encode()),
            ]
            sends.append(
                await self.producer.send(
                    self.dlq_topic, record.value, key=record.key, headers=headers
                )
            )
        await asyncio.gather(*sends)

    async def _append_correctives(self, correctives: list[tuple[int, ReactionEvent]]) -> None:
        sends = [
            await self.producer.send(
                self.topic,
                event.encode(),
                key=record_key(event.article_id, event.user_id),
                partition=partition,
                headers=[("origin", b"corrective")],
            )
            for partition, event in correctives
        ]
        await asyncio.gather(*sends)

    async def _finish(self, report: BatchReport, epoch: bytes | str | None) -> None:
        """Positions first (the applies are done), then trending, then one notification.

        Under an epoch, the positions are written by a script that first checks the epoch
        marker, in the same step: if Redis lost its data since the batch was fetched, its
        applies may have landed on the emptied Redis. Then its articles are forgotten and
        RedisLostData makes the member replay its partitions.
        """
        positions = {position_key(tp.topic, tp.partition): n for tp, n in report.positions.items()}
        trend_calls: list[tuple[tuple[str], tuple[str | int, ...]]] = []
        if self.side_effects:
            minute = int(time.time()) // TREND_BUCKET_SECONDS
            trend_calls = [
                ((trend_key(reaction, minute),), (TREND_TTL_SECONDS, *pairs))
                for reaction, pairs in report.trends.items()
            ]
        notify = orjson.dumps(report.changed) if self.side_effects and report.changed else None
        try:
            if isinstance(self.redis, RedisCluster):
                # Its pipelines refuse scripts: the same steps, one after another.
                written = await self.redis.execute_command(
                    *self._positions_command(positions, epoch)
                )
                if written:
                    await evalsha_many(self.redis, self._trend.sha, trend_calls)
                    if notify:
                        await self.redis.publish(CHANGES_CHANNEL, notify)
            else:
                commands = [
                    self._positions_command(positions, epoch),
                    *(evalsha_command(self._trend.sha, k, a) for k, a in trend_calls),
                ]
                if notify:
                    commands.append(("PUBLISH", CHANGES_CHANNEL, notify))
                written = (await run_pipelined(self.redis, commands))[0]
        except NoScriptError:
            await self.redis.script_load(self._positions.script)
            await self.redis.script_load(self._trend.script)
            raise
        if not written:
            await self.forget(report.articles)
            await self.check_epoch()
            raise RedisLostData(f"the epoch marker is no longer {epoch!r}")

    def _positions_command(
        self, positions: dict[str, int], epoch: bytes | str | None
    ) -> tuple[str | int | bytes, ...]:
        """MSET of the positions or, under an epoch, the script that checks it first."""
        if epoch is None:
            return ("MSET", *(item for pair in positions.items() for item in pair))
        keys = (epoch_key(self.topic), *positions)
        return evalsha_command(self._positions.sha, keys, (epoch, *positions.values()))

    async def retry(self, op: Callable[[], Awaitable[T]], what: str) -> T:
        """Retry `op` with backoff until it succeeds, never skipping ahead; give up on stop."""
        delay = 0.05
        while True:
            try:
                return await op()
            except (RedisError, KafkaError, OSError) as exc:
                metrics.REDIS_RETRIES.inc()
                log.warning("retry", step=what, error=repr(exc), retry_in_s=delay)
            if self.stop.is_set():
                raise BatchAbandoned(what)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)


class ResumeFromRedis(ConsumerRebalanceListener):  # type: ignore[misc]
    """Waits for the batch in flight before giving partitions up; resumes from Redis.

    Redis, not Kafka's committed offset, decides where to resume: the committed offset can
    run ahead of what Redis durably kept (AOF fsyncs once a second), while the position
    key is written after the batch's applies and so never does.
    """

    def __init__(self, aggregator: Aggregator) -> None:
        self.aggregator = aggregator

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        # aiokafka calls this before rejoining: holding the batch lock here means the batch
        # in flight is applied and committed (or abandoned) before anyone else gets its
        # partitions.
        async with self.aggregator.batch_lock:
            # The last batch's positions and commit too. (Had it found Redis emptied, the
            # next owners replay: they find no position but a committed offset.)
            await self.aggregator.settle_tail(replay=False)
            self.aggregator.generation += 1
            log.info("partitions_revoked", partitions=sorted(tp.partition for tp in revoked))

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        await self.aggregator.seek_to_resume_positions(assigned)


class Aggregator:
    """The consumer-group member: reads batches, applies them, commits."""

    def __init__(self, settings: AggregatorSettings, redis: Redis) -> None:
        self.settings = settings
        self.redis = redis
        self.consumer: Any = None
        self.producer: Any = None
        self.stop_requested = asyncio.Event()
        self.batch_lock = asyncio.Lock()
        # Bumped on every revocation and after every assignment's seeks: a batch fetched
        # before was read from positions those seeks replaced, so it is dropped.
        self.generation = 0
        self.applier: BatchApplier | None = None
        # The last batch's step 4 and commit, running while the next batch is applied.
        self.tail: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start the producer (dead letters, correctives) and join the consumer group."""
        self.producer = new_producer(self.settings.kafka_bootstrap, linger_ms=5)
        await self.producer.start()
        self.applier = BatchApplier(
            self.redis,
            self.producer,
            topic=self.settings.topic,
            dlq_topic=self.settings.dlq_topic,
            partitions=self.settings.partitions,
            reactions=frozenset(self.settings.types),
            stop=self.stop_requested,
        )
        await self.applier.load_scripts()
        await self.applier.retry(self.applier.check_epoch, "epoch")
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=self.settings.kafka_bootstrap,
            group_id=self.settings.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=self.settings.session_timeout_ms,
            rebalance_timeout_ms=self.settings.rebalance_timeout_ms,
            max_poll_records=self.settings.max_batch,
            max_partition_fetch_bytes=self.settings.max_partition_fetch_bytes,
        )
        self.consumer.subscribe([self.settings.topic], listener=ResumeFromRedis(self))
        await self.consumer.start()

    async def stop(self) -> None:
        """Leave the group and close the Kafka clients; safe to call twice."""
        if self.consumer is not None:
            consumer, self.consumer = self.consumer, None
            await consumer.stop()
        if self.producer is not None:
            producer, self.producer = self.producer, None
            await producer.stop()

    async def replay_after_loss(self, reason: RedisLostData) -> None:
        """Replay every assigned partition from the start; fences skip what survived."""
        assigned = list(self.consumer.assignment())
        metrics.REPLAYS.inc(len(assigned))
        log.warning(
            "redis_lost_data_replaying",
            reason=str(reason),
            partitions=sorted(tp.partition for tp in assigned),
        )
        self.consumer.pause(*assigned)
        try:
            for tp in assigned:
                await self.consumer.seek_to_beginning(tp)
        finally:
            self.generation += 1
            self.consumer.resume(*assigned)

    async def seek_to_resume_positions(self, assigned: list[TopicPartition]) -> None:
        """Seek each assigned partition to its Redis position, or replay it from the start."""
        assert self.applier is not None
        # Paused while seeking, so no batch is fetched from a position about to be replaced;
        # batches fetched before are dropped (the generation moves on) and read again from
        # the Redis position, which never passes an unapplied batch.
        self.consumer.pause(*assigned)
        try:
            for tp in assigned:
                await self._seek_to_resume_position(tp)
        finally:
            self.generation += 1
            self.consumer.resume(*assigned)
        log.info("partitions_assigned", partitions=sorted(tp.partition for tp in assigned))

    async def _seek_to_resume_position(self, tp: TopicPartition) -> None:
        assert self.applier is not None
        key = position_key(tp.topic, tp.partition)
        position = await self.applier.retry(partial(self.redis.get, key), "position")
        if position is not None:
            self.consumer.seek(tp, int(position))
            return
        committed = await self.consumer.committed(tp)
        if committed is not None:
            # Kafka remembers progress that Redis does not: Redis lost data (restored
            # from an old backup, or flushed). Replay; the fences skip what survived.
            metrics.REPLAYS.inc()
            log.warning(
                "redis_lost_position_replaying",
                topic=tp.topic,
                partition=tp.partition,
                committed=committed,
            )
        await self.consumer.seek_to_beginning(tp)

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until `stop` is set; the batch in flight is finished and committed.

        Three stages overlap. While batch N's events are in Redis, batch N+1 is fetched and
        decoded in small chunks, yielding between them so that N's round trips go on; N+1
        grows until N is done (or it is full). Batch N's positions, trending and Kafka
        commit (`tail`) then run while N+1's events are applied; N+1's positions wait for
        N's. The applies themselves reach Redis one batch at a time, in order.
        """
        assert self.applier is not None
        watch = asyncio.create_task(self._forward_stop(stop))
        in_flight: asyncio.Task[bool] | None = None
        try:
            while not stop.is_set():
                decoded, generation, epoch = await self._next_batch(in_flight)
                if in_flight is not None:
                    finished, in_flight = await in_flight, None
                    if not finished:
                        return
                if decoded is not None:
                    batch = self.apply_batch(decoded, generation, epoch)
                    in_flight = asyncio.create_task(batch)
                    await asyncio.sleep(0)  # let it send its first round trip
                elif self.tail is not None:
                    async with self.batch_lock:  # idle: collect the last batch's outcome
                        await self.settle_tail()
            if in_flight is not None:
                await in_flight
        finally:
            watch.cancel()
            async with self.batch_lock:
                await self.settle_tail(replay=False)

    async def _next_batch(
        self, in_flight: asyncio.Task[bool] | None
    ) -> tuple[DecodedBatch | None, int, bytes | str | None]:
        """Fetch and decode records until the batch in flight is done or this one is full.

        Also returns the generation and the Redis epoch the records were fetched under.
        """
        assert self.applier is not None
        decoded: DecodedBatch | None = None
        generation, epoch = self.generation, self.applier.epoch
        limit = self.settings.max_batch
        while True:
            busy = in_flight is not None and not in_flight.done()
            records = await self.consumer.getmany(
                timeout_ms=0 if busy or decoded is not None else 200,
                max_records=min(FETCH_CHUNK, limit - (decoded.size if decoded else 0)),
            )
            if generation != self.generation:
                # A rebalance seeked the partitions to their Redis positions: what was
                # decoded so far comes again from there.
                decoded, generation, epoch = None, self.generation, self.applier.epoch
            if records:
                decoded = self.applier.decode(records, into=decoded)
                if decoded.size >= limit:
                    return decoded, generation, epoch
            busy = in_flight is not None and not in_flight.done()
            if not busy and (decoded is not None or not records):
                return decoded, generation, epoch
            if records:
                await asyncio.sleep(0)  # getmany may not yield while records are buffered
            elif in_flight is not None:
                await asyncio.wait([in_flight])

    async def _forward_stop(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self.stop_requested.set()

    async def apply_batch(
        self, decoded: DecodedBatch, generation: int, epoch: bytes | str | None
    ) -> bool:
        """Apply one decoded batch and start its tail; False when abandoned for shutdown."""
        assert self.applier is not None
        async with self.batch_lock:
            if generation != self.generation or epoch != self.applier.epoch:
                # Partitions were (re)assigned and seeked to their Redis positions since
                # this batch was fetched (or a replay began): its records come again from
                # there. Applying it now would be harmless for counts (fences) but repeat
                # its dead letters.
                log.info("batch_dropped_after_rebalance", records=decoded.size)
                return True
            # A rebalance may have taken partitions since getmany; their new owner reads
            # them from the Redis position (the fences would make it safe anyway).
            decoded = decoded.only(set(self.consumer.assignment()))
            if not decoded.positions:
                return True
            try:
                report = await self.applier.apply_events(decoded)
            except BatchAbandoned as exc:
                log.info("batch_abandoned_for_shutdown", step=str(exc))
                return False
            # This batch's positions may only follow the previous batch's.
            if not await self.settle_tail():
                return False
            if epoch != self.applier.epoch:
                # The previous batch found Redis emptied (and began the replay) while this
                # one was applied, perhaps onto the emptied Redis.
                applier = self.applier
                await applier.retry(lambda: applier.forget(report.articles), "forget")
                return True
            self.tail = asyncio.create_task(self._finish_batch(report, epoch))
            return True

    async def settle_tail(self, *, replay: bool = True) -> bool:
        """Wait for the last batch's tail; False when it was abandoned for shutdown.

        Called with the batch lock held. A tail that found Redis emptied starts the replay
        (unless the partitions are being given up).
        """
        tail, self.tail = self.tail, None
        if tail is None:
            return True
        try:
            await tail
        except BatchAbandoned as exc:
            log.info("batch_abandoned_for_shutdown", step=str(exc))
            return False
        except RedisLostData as exc:
            if replay:
                await self.replay_after_loss(exc)
        return True

    async def _finish_batch(self, report: BatchReport, epoch: bytes | str | None) -> None:
        assert self.applier is not None
        await self.applier.finish(report, epoch)
        await self._commit(report.positions)
        for tp, position in report.positions.items():
            highwater = self.consumer.highwater(tp)
            if highwater is not None:
                metrics.CONSUMER_LAG.labels(str(tp.partition)).set(max(0, highwater - position))

    async def _commit(self, positions: dict[TopicPartition, int]) -> None:
        try:
            await self.consumer.commit(positions)
        except (CommitFailedError, IllegalStateError) as exc:
            # The group rebalanced under us. Nothing is lost or doubled: the Redis
            # positions are the truth and the next owner resumes from them.
            log.warning(
                "commit_failed",
                error=repr(exc),
                partitions={tp.partition: p for tp, p in positions.items()},
            )
        except KafkaError as exc:
            log.warning("commit_failed", error=repr(exc))
