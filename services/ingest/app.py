"""The write path: validate → build event → produce (acks=all) → 202."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Final

import orjson
from aiokafka.errors import (
    InvalidProducerEpoch,
    KafkaError,
    OutOfOrderSequenceNumber,
    ProducerFenced,
    UnknownProducerId,
)
from fastapi import FastAPI, Request
from fastapi.responses import Response
from prometheus_client import Counter, Histogram, multiprocess
from pydantic import BaseModel
from starlette.datastructures import Headers
from starlette.requests import ClientDisconnect

from services.ingest.config import IngestSettings
from services.ingest.ratelimit import RateLimits
from shared.events import MAX_CLIENT_TS, ReactionEvent, partition_for, valid_client_ts
from shared.http import (
    ApiError,
    ContractCors,
    ErrorBody,
    install_error_handlers,
    kafka_reachable,
    ops_router,
)
from shared.kafka import ensure_topics, new_producer
from shared.logs import configure_logging, get_logger
from shared.metrics import RequestMetrics
from shared.params import ArticleIdPath, UserIdPath, check_article_id, check_user_id
from shared.reactions import ReactionSet

log = get_logger(__name__)
# Checked before per-event debug lines so the hot path skips structlog's processors.
_std_log = logging.getLogger(__name__)

MAX_BODY_BYTES: Final = 1024
BODY_FIELDS: Final = frozenset({"reaction", "client_ts"})
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
EVENTS: Final = Counter(
    "reactions_ingest_events_total",
    "Events acknowledged by Kafka and answered 202, by op (set or clear).",
    ["op"],
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
    """The event was handed to the producer but Kafka's ack did not come back in time."""
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
        self.settings = settings
        self.producer: Any = None
        self.generation = 0
        self._replacing: asyncio.Task[None] | None = None
        # Set while Kafka is known unreachable (an ack timed out): requests are refused at
        # once instead of being buffered, so their 503 is certain; cleared by a probe.
        self._outage: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.producer = await self._started_producer()
        self.generation = 1

    async def stop(self) -> None:
        for task in (self._replacing, self._outage):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self.producer is not None:
            await self.producer.stop()
            self.producer = None

    def healthy(self) -> bool:
        """False while the producer is broken or being replaced."""
        return self.producer is not None and not producer_is_broken(self.producer)

    async def publish(self, event: ReactionEvent) -> None:
        """Produce one event and wait for its acknowledgement, within the timeout; else 503."""
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
                await ack
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
            raise _unavailable() from None
        PUBLISH_SECONDS.observe(time.perf_counter() - started)

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


def _too_large() -> ApiError:
    return ApiError(413, "body_too_large", f"The body must be at most {MAX_BODY_BYTES} bytes.")


async def _read_body(request: Request) -> dict[str, Any]:
    """The JSON object body: size checked before anything is parsed, streamed or not."""
    headers: Headers = request.headers
    length = headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > MAX_BODY_BYTES):
        raise _too_large()
    content_type = headers.get("content-type", "")
    if content_type.split(";")[0].strip().lower() != "application/json":
        raise ApiError(415, "unsupported_media_type", "The body must be application/json.")
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY_BYTES:
                raise _too_large()
    except ClientDisconnect:
        # Nobody is left to read the answer; a 400 keeps it out of the 5xx counts.
        raise ApiError(400, "incomplete_body", "The client went away mid-body.") from None
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise ApiError(400, "malformed_json", "The body is not valid JSON.") from None
    if not isinstance(parsed, dict):
        raise ApiError(422, "invalid_body", "The body must be a JSON object.")
    return parsed


def _parse_set(body: dict[str, Any], reactions: ReactionSet) -> tuple[str, int | None]:
    unknown = body.keys() - BODY_FIELDS
    if unknown:
        raise ApiError(422, "unknown_field", f"Unknown field(s): {', '.join(sorted(unknown))}.")
    reaction = body.get("reaction")
    if not isinstance(reaction, str) or reaction not in reactions:
        raise ApiError(
            422, "unknown_reaction", f"reaction must be one of: {', '.join(reactions.ids)}."
        )
    client_ts = body.get("client_ts")
    if isinstance(client_ts, float) and client_ts.is_integer() and client_ts <= MAX_CLIENT_TS:
        client_ts = int(client_ts)  # JSON has one number type: 1.0 is the integer 1
    if "client_ts" in body and not valid_client_ts(client_ts):
        raise ApiError(
            422,
            "invalid_client_ts",
            "client_ts must be a positive integer of milliseconds, at most 2^53.",
        )
    return reaction, client_ts


class Accepted(BaseModel):
    """The 202 body: Kafka acknowledged the event."""

    accepted: bool
    event_id: str


_RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before retrying.",
        "required": True,
        "schema": {"type": "integer", "minimum": 1},
    }
}
_WRITE_RESPONSES: dict[int | str, dict[str, Any]] = {
    202: {"model": Accepted, "description": "Acknowledged by Kafka (acks=all)."},
    404: {"model": ErrorBody, "description": "No such route (an id held a '/' or was empty)."},
    422: {"model": ErrorBody, "description": "Unknown reaction, bad id, field or client_ts."},
    429: {"model": ErrorBody, "description": "Rate limited.", "headers": _RETRY_AFTER},
    503: {"model": ErrorBody, "description": "Kafka unavailable.", "headers": _RETRY_AFTER},
}
_BODY_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "The body is not valid JSON."},
    413: {"model": ErrorBody, "description": f"The body is over {MAX_BODY_BYTES} bytes."},
    415: {"model": ErrorBody, "description": "The body is not application/json."},
}


def create_app(settings: IngestSettings) -> FastAPI:
    """The ingest application; clients live in its lifespan."""
    reactions: ReactionSet = settings.reaction_set()
    # Series exist at zero from the start, so rate() and increase() see their first event.
    for kind in ("timeout", "unavailable", "producer_recreated"):
        KAFKA_ERRORS.labels(kind)
    for op in ("set", "clear"):
        EVENTS.labels(op)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await ensure_topics(
            settings.kafka_bootstrap,
            settings.topic,
            settings.partitions,
            settings.replication_factor,
            dlq_topic=settings.dlq_topic,
        )
        publisher = Publisher(settings)
        await publisher.start()
        app.state.publisher = publisher
        app.state.limits = RateLimits(settings)
        try:
            yield
        finally:
            await publisher.stop()

    app = FastAPI(
        title="Reactions ingest",
        version="1",
        description="The write path: set or clear a reader's reaction on an article.",
        lifespan=lifespan,
        # Prometheus covers requests; FastAPI's OpenTelemetry hooks would only cost time.
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
    )
    install_error_handlers(app)
    app.add_middleware(
        ContractCors,
        allow_origins=settings.origins,
        allow_methods=["PUT", "DELETE"],
        allow_headers=["Content-Type"],
        allow_credentials=False,
        max_age=600,
    )
    app.add_middleware(RequestMetrics)

    async def ready(request: Request) -> dict[str, bool]:
        publisher: Publisher = request.app.state.publisher
        healthy = publisher.healthy() and await kafka_reachable(publisher.producer.client)
        return {"kafka": healthy}

    app.include_router(ops_router(ready))

    async def admit(request: Request, article_id: str, user_id: str) -> None:
        """Rate limits (per client IP, then per reader) and id checks, before any work."""
        limits: RateLimits = request.app.state.limits
        await limits.check("ip", limits.per_ip, limits.client_hash(request.scope))
        check_article_id(article_id)
        check_user_id(user_id)
        await limits.check("reader", limits.per_reader, user_id)

    async def accept(request: Request, event: ReactionEvent) -> Response:
        await request.app.state.publisher.publish(event)
        EVENTS.labels(event.op).inc()
        if _std_log.isEnabledFor(logging.DEBUG):
            log.debug("event_accepted", event_id=event.event_id, op=event.op)
        body = orjson.dumps({"accepted": True, "event_id": event.event_id})
        return Response(body, status_code=202, media_type="application/json")

    body_schema = {
        "type": "object",
        "additionalProperties": False,
        "required": ["reaction"],
        "properties": {
            "reaction": {"type": "string", "enum": list(reactions.ids)},
            "client_ts": {
                "type": "integer",
                "minimum": 1,
                "maximum": MAX_CLIENT_TS,
                "description": "The client's clock in ms; the newer write per reader wins.",
            },
        },
    }

    @app.put(
        "/v1/articles/{article_id}/reactions/{user_id}",
        status_code=202,
        responses={**_WRITE_RESPONSES, **_BODY_RESPONSES},
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": body_schema}},
            }
        },
    )
    async def set_reaction(
        article_id: ArticleIdPath, user_id: UserIdPath, request: Request
    ) -> Response:
        """Set (or move) the reader's reaction on the article."""
        await admit(request, article_id, user_id)
        reaction, client_ts = _parse_set(await _read_body(request), reactions)
        event = ReactionEvent.new("set", article_id, user_id, reaction, client_ts)
        return await accept(request, event)

    @app.delete(
        "/v1/articles/{article_id}/reactions/{user_id}",
        status_code=202,
        responses=_WRITE_RESPONSES,
    )
    async def clear_reaction(
        article_id: ArticleIdPath, user_id: UserIdPath, request: Request
    ) -> Response:
        """Clear the reader's reaction on the article (a no-op when none is set)."""
        await admit(request, article_id, user_id)
        return await accept(request, ReactionEvent.new("clear", article_id, user_id))

    return app


def app_from_env() -> FastAPI:
    """Factory for uvicorn workers: settings from the environment, JSON logs, metrics cleanup."""
    settings = IngestSettings()
    configure_logging("ingest", settings.log_level)
    logging.captureWarnings(True)  # library warnings as JSON lines too
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Live gauges of a worker that exits must not linger in the aggregated /metrics.
        atexit.register(multiprocess.mark_process_dead, os.getpid())
    return create_app(settings)
