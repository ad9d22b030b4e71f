"""The write path: validate → build event → produce (acks=all) → 202."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
from aiokafka.errors import KafkaError
from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import ORJSONResponse, Response

from services.ingest.config import IngestSettings
from shared.events import (
    ReactionEvent,
    partition_for,
    valid_article_id,
    valid_client_ts,
    valid_user_id,
)
from shared.http import ApiError, install_error_handlers, ops_router
from shared.kafka import ensure_topics, new_producer
from shared.logs import get_logger
from shared.metrics import RequestMetrics
from shared.reactions import ReactionSet

log = get_logger(__name__)

MAX_BODY_BYTES = 1024


class Publisher:
    """Owns the Kafka producer; 202 is only answered after Kafka acknowledged the record."""

    def __init__(self, settings: IngestSettings) -> None:
        self.settings = settings
        self.producer: Any = None

    async def start(self) -> None:
        self.producer = new_producer(
            self.settings.kafka_bootstrap,
            linger_ms=self.settings.linger_ms,
            request_timeout_ms=int(self.settings.publish_timeout_s * 1000),
        )
        await self.producer.start()

    async def stop(self) -> None:
        if self.producer is not None:
            await self.producer.stop()
            self.producer = None

    async def publish(self, event: ReactionEvent) -> None:
        """Produce one event and wait for its acknowledgement, within the timeout."""
        partition = partition_for(event.article_id, self.settings.partitions)
        try:
            async with asyncio.timeout(self.settings.publish_timeout_s):
                ack = await self.producer.send(
                    self.settings.topic, event.encode(), key=event.key(), partition=partition
                )
                await ack
        except (TimeoutError, KafkaError) as exc:
            log.warning("publish_failed", event_id=event.event_id, error=repr(exc))
            raise ApiError(
                503,
                "kafka_unavailable",
                "The reaction could not be stored right now; please retry shortly.",
                {"Retry-After": "1"},
            ) from None


def _check_ids(article_id: str, user_id: str) -> None:
    if not valid_article_id(article_id):
        raise ApiError(
            422,
            "invalid_article_id",
            "article_id must be 1-128 characters of A-Z a-z 0-9 . _ : ~ -.",
        )
    if not valid_user_id(user_id):
        raise ApiError(
            422, "invalid_user_id", "user_id must be 1-64 characters of A-Z a-z 0-9 . _ ~ -."
        )


async def _read_body(request: Request) -> dict[str, Any]:
    content_type = request.headers.get("content-type", "")
    if content_type.split(";")[0].strip().lower() != "application/json":
        raise ApiError(415, "unsupported_media_type", "The body must be application/json.")
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > MAX_BODY_BYTES):
        raise ApiError(413, "body_too_large", f"The body must be at most {MAX_BODY_BYTES} bytes.")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise ApiError(
                413, "body_too_large", f"The body must be at most {MAX_BODY_BYTES} bytes."
            )
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise ApiError(400, "malformed_json", "The body is not valid JSON.") from None
    if not isinstance(parsed, dict):
        raise ApiError(422, "invalid_body", "The body must be a JSON object.")
    return parsed


def create_app(settings: IngestSettings) -> FastAPI:
    """The ingest application; clients live in its lifespan."""
    reactions: ReactionSet = settings.reaction_set()

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
        try:
            yield
        finally:
            await publisher.stop()

    app = FastAPI(
        title="Reactions ingest",
        version="1",
        lifespan=lifespan,
        default_response_class=ORJSONResponse,
    )
    install_error_handlers(app)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=[o.strip() for o in settings.allowed_origins.split(",") if o.strip()],
        allow_methods=["PUT", "DELETE"],
        allow_headers=["Content-Type"],
        allow_credentials=False,
        max_age=600,
    )
    app.add_middleware(RequestMetrics)

    async def ready(request: Request) -> dict[str, bool]:
        producer = request.app.state.publisher.producer
        ok = False
        if producer is not None:
            try:
                async with asyncio.timeout(1.0):
                    await producer.client.fetch_all_metadata()
                ok = True
            except (TimeoutError, KafkaError, OSError):
                ok = False
        return {"kafka": ok}

    app.include_router(ops_router(ready))

    @app.put("/v1/articles/{article_id}/reactions/{user_id}", status_code=202)
    async def set_reaction(article_id: str, user_id: str, request: Request) -> Response:
        """Set (or move) the reader's reaction on the article."""
        _check_ids(article_id, user_id)
        body = await _read_body(request)
        unknown = set(body) - {"reaction", "client_ts"}
        if unknown:
            raise ApiError(422, "unknown_field", f"Unknown field(s): {', '.join(sorted(unknown))}.")
        reaction = body.get("reaction")
        if not isinstance(reaction, str) or reaction not in reactions:
            raise ApiError(
                422,
                "unknown_reaction",
                f"reaction must be one of: {', '.join(reactions.ids)}.",
            )
        client_ts = body.get("client_ts")
        if client_ts is not None and not valid_client_ts(client_ts):
            raise ApiError(
                422, "invalid_client_ts", "client_ts must be a positive integer of milliseconds."
            )
        event = ReactionEvent.new("set", article_id, user_id, reaction, client_ts)
        await request.app.state.publisher.publish(event)
        return ORJSONResponse({"accepted": True, "event_id": event.event_id}, status_code=202)

    @app.delete("/v1/articles/{article_id}/reactions/{user_id}", status_code=202)
    async def clear_reaction(article_id: str, user_id: str, request: Request) -> Response:
        """Clear the reader's reaction on the article (a no-op when none is set)."""
        _check_ids(article_id, user_id)
        event = ReactionEvent.new("clear", article_id, user_id)
        await request.app.state.publisher.publish(event)
        return ORJSONResponse({"accepted": True, "event_id": event.event_id}, status_code=202)

    return app
