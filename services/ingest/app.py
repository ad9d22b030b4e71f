"""The write path: validate → build event → produce (acks=all) → 202."""

from __future__ import annotations

import atexit
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Final

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response
from prometheus_client import Counter, multiprocess
from pydantic import BaseModel
from starlette.datastructures import Headers
from starlette.requests import ClientDisconnect

from services.ingest.config import IngestSettings
from services.ingest.publisher import KAFKA_ERRORS, Publisher
from services.ingest.ratelimit import RateLimits
from shared.events import MAX_CLIENT_TS, ReactionEvent, valid_client_ts
from shared.http import (
    ApiError,
    ContractCors,
    ErrorBody,
    install_error_handlers,
    kafka_reachable,
    ops_router,
)
from shared.kafka import ensure_topics
from shared.logs import configure_logging, get_logger
from shared.metrics import RequestMetrics
from shared.params import ArticleIdPath, UserIdPath, check_article_id, check_user_id
from shared.reactions import ReactionSet

log = get_logger(__name__)
# Checked before per-event debug lines so the hot path skips structlog's processors.
_std_log = logging.getLogger(__name__)

MAX_BODY_BYTES: Final = 1024
BODY_FIELDS: Final = frozenset({"reaction", "client_ts"})
EVENTS: Final = Counter(
    "reactions_ingest_events_total",
    "Events acknowledged by Kafka and answered 202, by op (set or clear).",
    ["op"],
)


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
