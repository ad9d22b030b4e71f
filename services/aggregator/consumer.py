"""The consumer-group member: joins the group, resumes each assigned partition from its Redis
position, fetches batches and hands them to the applier (`applier.py`, where the hot path
of a batch reads top to bottom), commits, and shuts down cleanly.

The member knows the group (assignments, rebalances, generations) and the order of batches;
the applier knows records, scripts and fences. Both retry through `retry.py`.
"""

from __future__ import annotations

import asyncio
from functools import partial
from typing import Any, Final

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError
from redis.asyncio import Redis

from services.aggregator import metrics, recovery
from services.aggregator.applier import LIVE, BatchApplier, BatchReport, RedisLostData
from services.aggregator.config import AggregatorSettings
from services.aggregator.decode import DecodedBatch
from services.aggregator.marks import RedisRolledBack
from services.aggregator.retry import (
    EPOCH,
    FORGET,
    MARKS,
    POSITION,
    BatchAbandoned,
    BatchContext,
    RetryPolicy,
    error_fields,
)
from services.aggregator.watch import Identity, redis_identity, watch_identity
from shared.kafka import new_producer
from shared.logs import get_logger
from shared.shutdown import close_within
from shared.tallies import epoch_key, position_key

log = get_logger(__name__)

# Records decoded at a time while a batch is in Redis: small enough that the event loop
# returns to that batch's round trips often, large enough to amortise getmany.
FETCH_CHUNK: Final = 500
# The longest wait for Kafka to take a batch's commit (a few ms when it is healthy).
COMMIT_TIMEOUT_S: Final = 10.0
# How often the lag is read from Kafka's end offsets (two small requests).
LAG_SAMPLE_S: Final = 5.0


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
            await recovery.release_marks(self.aggregator, revoked)
            self.aggregator.generation += 1
            for tp in revoked:  # the next owner reports their lag
                if self.aggregator.applied.pop(tp, None) is not None:
                    metrics.CONSUMER_LAG.remove(str(tp.partition))
            log.info("partitions_revoked", partitions=sorted(tp.partition for tp in revoked))

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        await self.aggregator.seek_to_resume_positions(assigned)


class Aggregator:
    """The consumer-group member: reads batches, applies them, commits."""

    def __init__(self, settings: AggregatorSettings, redis: Redis) -> None:
        self.settings = settings
        self.redis = redis
        self.consumer: Any = None
        self.stop_requested = asyncio.Event()
        self.retry = RetryPolicy(self.stop_requested)
        # The producer of dead letters and correctives: built here, unstarted, so that the
        # applier holds it from the first; `start` and `stop` run it.
        self.producer: Any = new_producer(settings.kafka_bootstrap, linger_ms=5)
        self.applier = BatchApplier(
            redis,
            self.producer,
            topic=settings.topic,
            dlq_topic=settings.dlq_topic,
            partitions=settings.partitions,
            clock_skew_ms=settings.client_clock_skew_ms,
            retry=self.retry,
            mode=LIVE,
            dlq_max_record_bytes=settings.dlq_max_record_bytes,
        )
        self.applier.topic_ends = partial(recovery.topic_ends, settings)
        self.batch_lock = asyncio.Lock()
        # Bumped on every revocation and after every assignment's seeks: a batch fetched
        # before was read from positions those seeks replaced, so it is dropped.
        self.generation = 0
        # The last batch's step 4 and commit, running while the next batch is applied.
        self.tail: asyncio.Task[None] | None = None
        # Who the Redis masters were when the member started (see watch.py).
        self.masters: Identity = frozenset()
        # Each assigned partition's position in Redis: where its lag counts from.
        self.applied: dict[TopicPartition, int] = {}

    async def start(self) -> None:
        """Start the producer (dead letters, correctives) and join the consumer group."""
        await self.producer.start()
        await self.applier.load_scripts()
        context = BatchContext(self.settings.topic)
        await self.retry.run(self.applier.check_epoch, EPOCH, context)
        # Before any partition's marks are read: a change after this is seen by the watch.
        identity = partial(redis_identity, self.redis, epoch_key(self.settings.topic))
        self.masters = await self.retry.run(identity, MARKS, context)
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
        """Leave the group and close the Kafka clients, each within a bound; safe twice."""
        if self.consumer is not None:
            consumer, self.consumer = self.consumer, None
            await close_within("kafka_consumer", consumer.stop(), abort=consumer._client.close)
        # aiokafka's stop does nothing the second time.
        await close_within("kafka_producer", self.producer.stop(), abort=self.producer.client.close)

    async def seek_to_resume_positions(self, assigned: list[TopicPartition]) -> None:
        """Seek each assigned partition to its Redis position, or replay it from the start."""
        # Paused while seeking, so no batch is fetched from a position about to be replaced;
        # batches fetched before are dropped (the generation moves on) and read again from
        # the Redis position, which never passes an unapplied batch.
        self.consumer.pause(*assigned)
        try:
            # The marks first: a Redis that goes back in time after they are read is noticed
            # (had they been read after the positions, it could go back in between unseen).
            partitions = [tp.partition for tp in assigned]
            context = BatchContext(self.settings.topic, tuple(sorted(partitions)))
            await self.retry.run(partial(self.applier.marks.adopt, partitions), MARKS, context)
            for tp in assigned:
                await self._seek_to_resume_position(tp)
        finally:
            self.generation += 1
            self.consumer.resume(*assigned)
        log.info("partitions_assigned", partitions=sorted(tp.partition for tp in assigned))

    async def _seek_to_resume_position(self, tp: TopicPartition) -> None:
        key = position_key(tp.topic, tp.partition)
        context = BatchContext(tp.topic, (tp.partition,))
        position = await self.retry.run(partial(self.redis.get, key), POSITION, context)
        self.applied.pop(tp, None)
        if position is not None:
            self.applied[tp] = int(position)
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
        watch = asyncio.create_task(self._forward_stop(stop))
        check = partial(recovery.check_marks, self)
        marker = epoch_key(self.settings.topic)
        masters = asyncio.create_task(watch_identity(self.redis, marker, self.masters, check))
        lag = asyncio.create_task(self._sample_lag())
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
            masters.cancel()
            lag.cancel()
            async with self.batch_lock:
                await self.settle_tail(replay=False)

    async def _next_batch(
        self, in_flight: asyncio.Task[bool] | None
    ) -> tuple[DecodedBatch | None, int, bytes | str | None]:
        """Fetch and decode records until the batch in flight is done or this one is full.

        Also returns the generation and the Redis epoch the records were fetched under.
        """
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
                exc.log()
                return False
            except RedisRolledBack as exc:
                # No call of this batch landed on the slots that went back (their marks
                # refuse them): the replay reads the batch again.
                return await recovery.replay_after_rollback(self, exc, decoded, epoch)
            # This batch's positions may only follow the previous batch's.
            if not await self.settle_tail():
                return False
            if epoch != self.applier.epoch:
                # The previous batch found Redis emptied (and began the replay) while this
                # one was applied, perhaps onto the emptied Redis.
                forget = partial(self.applier.forget, report.articles)
                await self.retry.run(forget, FORGET, report.context)
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
            exc.log()
            return False
        except RedisLostData as exc:
            if replay:
                await recovery.replay_from_start(self, exc)
        return True

    async def _finish_batch(self, report: BatchReport, epoch: bytes | str | None) -> None:
        await self.applier.finish(report, epoch)
        await self._commit(report)
        self.applied.update(report.positions)
        for tp, position in report.positions.items():
            highwater = self.consumer.highwater(tp)
            if highwater is not None:
                metrics.CONSUMER_LAG.labels(str(tp.partition)).set(max(0, highwater - position))

    async def _sample_lag(self) -> None:
        """Every few seconds, each assigned partition's records behind its log end, from
        Kafka's end offsets: a member stalled (Redis full or away, a batch retried) finishes
        no batch, and its lag must grow all the same. A partition replayed from the start
        counts from where its log starts."""
        while True:
            await asyncio.sleep(LAG_SAMPLE_S)
            assigned = list(self.consumer.assignment())
            if not assigned:
                continue
            try:
                async with asyncio.timeout(LAG_SAMPLE_S):
                    ends = await self.consumer.end_offsets(assigned)
                    unknown = [tp for tp in assigned if tp not in self.applied]
                    starts = await self.consumer.beginning_offsets(unknown) if unknown else {}
            except (KafkaError, TimeoutError):
                continue  # Kafka's own troubles are reported elsewhere; look again later
            for tp, end in ends.items():
                applied = self.applied.get(tp, starts.get(tp))
                if applied is not None:
                    metrics.CONSUMER_LAG.labels(str(tp.partition)).set(max(0, end - applied))

    async def _commit(self, report: BatchReport) -> None:
        try:
            # Bounded: the next batch's positions, a rebalance and shutdown wait for it.
            async with asyncio.timeout(COMMIT_TIMEOUT_S):
                await self.consumer.commit(report.positions)
        except (KafkaError, TimeoutError) as exc:
            # Not retried: the Redis positions, not Kafka's offsets, are the truth and the
            # next owner resumes from them. (Mostly CommitFailedError or IllegalStateError:
            # the group rebalanced under us.)
            log.warning("commit_failed", **error_fields(exc), **report.context.fields())
