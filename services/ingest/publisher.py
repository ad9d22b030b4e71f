"""The Kafka side of the write path: one idempotent producer, acks=all, replaced when it
breaks; while Kafka is unreachable, writes are refused at once with a certain 503."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any, Final

from aiokafka.errors import (
    InvalidProducerEpoch,
    KafkaError,
    OutOfOrderSequenceNumber,
    ProducerFenced,
    UnknownProducerId,
)
from prometheus_client import Counter, Histogram

from services.ingest.config import IngestSettings
from shared.events import ReactionEvent, partition_for
from shared.http import ApiError
from shared.kafka import new_producer
from shared.logs import get_logger
from shared.shutdown import close_within

log = get_logger(__name__)

# Errors after which aiokafka's idempotent producer never delivers again: only a new
# producer (a new producer id) gets writes through.
FATAL_PRODUCER_ERRORS: Final = (
    ProducerFenced,
    OutOfOrderSequenceNumber,
    UnknownProducerId,
    InvalidProducerEpoch,
)

# How often a refused-while-down ingest asks Kafka whether it is back.
OUTAGE_PROBE_INTERVAL_S: Final = 0.25

PUBLISH_SECONDS: Final = Histogram(
    "reactions_ingest_publish_seconds",
    "Time from handing an event to the producer to Kafka's acknowledgement (acks=all).",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5),
)
KAFKA_ERRORS: Final = Counter(
    "reactions_ingest_kafka_errors_total",
    "Publishes answered 503 and producer recreations, by kind.",
    ["kind"],
)


def _unavailable() -> ApiError:
    """Nothing was handed to Kafka: the reaction is certainly not recorded."""
    return ApiError(
        503,
        "kafka_unavailable",
        "The reaction could not be stored right now and was not recorded; please retry shortly.",
        {"Retry-After": "1"},
    )


def _unconfirmed() -> ApiError:
    """The event was handed to the producer but Kafka's ack did not come back: in time, or
    at all (the producer gave up on it)."""
    return ApiError(
        503,
        "publish_timeout",
        "Kafka did not confirm the reaction in time, so it may or may not be recorded; "
        "retrying is safe, since setting the same reaction twice counts once.",
        {"Retry-After": "1"},
    )


def producer_is_broken(producer: Any) -> bool:
    """True when aiokafka's producer can no longer deliver: its sender died or is fatal."""
    sender_task = producer._sender.sender_task
    if sender_task is not None and sender_task.done():
        return True
    txn_manager = producer._txn_manager
    return txn_manager is not None and bool(txn_manager.is_fatal_error())


class Publisher:
    """Owns the Kafka producer; 202 is only answered after Kafka acknowledged the record.

    A producer in a fatal state is replaced by one background task, whichever request
    noticed first; concurrent requests wait for that same task instead of racing.
    """

    def __init__(self, settings: IngestSettings) -> None:
        # Series exist at zero from the start, so rate() and increase() see their first event.
        for kind in ("timeout", "unavailable", "producer_recreated"):
            KAFKA_ERRORS.labels(kind)
        self.settings = settings
        self.producer: Any = None
        self.generation = 0
        self._replacing: asyncio.Task[None] | None = None
        # Set while Kafka is known unreachable (an ack timed out): requests are refused at
        # once instead of being buffered, so their 503 is certain; cleared by a probe.
        self._outage: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start the first producer; raises if Kafka cannot be reached in time."""
        self.producer = await self._started_producer()
        self.generation = 1

    async def stop(self) -> None:
        """Cancel the replacement and the outage probe, stop the producer; safe twice."""
        for task in (self._replacing, self._outage):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self.producer is not None:
            producer = self.producer
            await close_within("kafka_producer", producer.stop(), abort=producer.client.close)
            self.producer = None

    def healthy(self) -> bool:
        """False while the producer is broken or being replaced."""
        return self.producer is not None and not producer_is_broken(self.producer)

    async def publish(self, event: ReactionEvent) -> int:
        """Produce one event and wait for its acknowledgement, within the timeout; else 503.

        Returns the event's offset in its partition.
        """
        if self.kafka_down():
            KAFKA_ERRORS.labels("unavailable").inc()
            raise _unavailable()
        partition = partition_for(event.article_id, self.settings.partitions)
        started = time.perf_counter()
        producer, generation = self.producer, self.generation
        handed_over = False
        try:
            async with asyncio.timeout(self.settings.publish_timeout_s):
                if not self.healthy():
                    replacing = self.replace(generation)
                    if replacing is not None:
                        await asyncio.shield(replacing)
                    producer, generation = self.producer, self.generation
                ack = await producer.send(
                    self.settings.topic, event.encode(), key=event.key(), partition=partition
                )
                handed_over = True
                metadata = await ack
        except TimeoutError:
            KAFKA_ERRORS.labels("timeout").inc()
            log.warning("publish_timed_out", event_id=event.event_id, handed_over=handed_over)
            self._begin_outage()
            # A buffered event is delivered once Kafka is back: its fate is unknown.
            raise (_unconfirmed() if handed_over else _unavailable()) from None
        except KafkaError as exc:
            KAFKA_ERRORS.labels(type(exc).__name__).inc()
            log.warning("publish_failed", event_id=event.event_id, error=repr(exc))
            if isinstance(exc, FATAL_PRODUCER_ERRORS) or producer_is_broken(producer):
                self.replace(generation)
            # Once handed over, an error is no certain no: the producer retries a batch
            # whose answer it lost and may then give up on it (a partition without a
            # leader past the timeout), while the broker wrote an earlier attempt.
            raise (_unconfirmed() if handed_over else _unavailable()) from None
        PUBLISH_SECONDS.observe(time.perf_counter() - started)
        return int(metadata.offset)

    def kafka_down(self) -> bool:
        """True while an ack timed out and no probe has reached Kafka since."""
        return self._outage is not None and not self._outage.done()

    def _begin_outage(self) -> None:
        if not self.kafka_down():
            log.warning("kafka_unreachable")
            self._outage = asyncio.create_task(self._probe_until_reachable())

    async def _probe_until_reachable(self) -> None:
        while True:
            await asyncio.sleep(OUTAGE_PROBE_INTERVAL_S)
            try:
                async with asyncio.timeout(1.0):
                    await self.producer.client.fetch_all_metadata()
            except (TimeoutError, KafkaError, OSError, AttributeError):
                continue
            log.info("kafka_reachable")
            return

    def replace(self, generation: int) -> asyncio.Task[None] | None:
        """The one task replacing producer `generation`; None if that one is already gone.

        A late error from an old producer must not replace its healthy successor.
        """
        if generation != self.generation:
            return None
        if self._replacing is None or self._replacing.done():
            self._replacing = asyncio.create_task(self._replace_producer())
        return self._replacing

    async def _replace_producer(self) -> None:
        old = self.producer
        log.warning("producer_recreating", generation=self.generation)
        KAFKA_ERRORS.labels("producer_recreated").inc()
        while True:
            try:
                new = await self._started_producer()
                break
            except (TimeoutError, KafkaError, OSError) as exc:
                log.warning("producer_start_failed", error=repr(exc))
                await asyncio.sleep(1.0)
        self.producer = new
        self.generation += 1
        log.info("producer_recreated", generation=self.generation)
        if old is not None:
            with contextlib.suppress(TimeoutError, KafkaError, OSError):
                async with asyncio.timeout(5):
                    await old.stop()

    async def _started_producer(self) -> Any:
        producer = new_producer(
            self.settings.kafka_bootstrap,
            linger_ms=self.settings.linger_ms,
            request_timeout_ms=int(self.settings.publish_timeout_s * 1000),
        )
        try:
            async with asyncio.timeout(max(10.0, self.settings.publish_timeout_s)):
                await producer.start()
        except BaseException:
            with contextlib.suppress(TimeoutError, KafkaError, OSError):
                async with asyncio.timeout(5):
                    await producer.stop()
            raise
        return producer
