"""The write path, top to bottom: admit (rate limits, ids) → read the body → parse it →
build the event → publish (acks=all) → 202."""

from __future__ import annotations

import logging
from typing import Any, Final

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response
from prometheus_client import Counter
from pydantic import BaseModel
from starlette.datastructures import Headers
from starlette.requests import ClientDisconnect

from services.ingest.deps import StateDep
from services.ingest.publisher import Publisher
from services.ingest.ratelimit import RateLimits
from shared.events import MAX_CLIENT_TS, ReactionEvent, valid_client_ts
from shared.http import ApiError, ErrorBody
from shared.logs import get_logger
from shared.params import ArticleIdPath, UserIdPath, check_article_id, check_user_id
from shared.reactions import ReactionSet

log = get_logger(__name__)
# Checked before per-event debug lines so the hot path skips structlog's processors.
_std_log = logging.getLogger(__name__)

MAX_BODY_BYTES: Final = 1024
BODY_FIELDS: Final = frozenset({"reaction", "client_ts"})
WRITE_PATH: Final = "/v1/articles/{article_id}/reactions/{user_id}"

EVENTS: Final = Counter(
    "reactions_ingest_events_total",
    "Events acknowledged by Kafka and answered 202, by op (set or clear).",
    ["op"],
)


async def set_reaction(
    article_id: ArticleIdPath,
    user_id: UserIdPath,
    request: Request,
    state: StateDep,
) -> Response:
    """Set (or move) the reader's reaction on the article."""
    await admit(request, state["limits"], article_id, user_id)
    reaction, client_ts = parse_set(await read_body(request), state["reactions"])
    event = ReactionEvent.new("set", article_id, user_id, reaction, client_ts)
    return await accept(state["publisher"], event)


async def clear_reaction(
    article_id: ArticleIdPath,
    user_id: UserIdPath,
    request: Request,
    state: StateDep,
) -> Response:
    """Clear the reader's reaction on the article (a no-op when none is set)."""
    await admit(request, state["limits"], article_id, user_id)
    return await accept(state["publisher"], ReactionEvent.new("clear", article_id, user_id))


async def admit(request: Request, limits: RateLimits, article_id: str, user_id: str) -> None:
    """Rate limits (per client IP, then per reader) and id checks, before any work."""
    await limits.check("ip", limits.per_ip, limits.client_hash(request.scope))
    check_article_id(article_id)
    check_user_id(user_id)
    await limits.check("reader", limits.per_reader, user_id)


def _too_large() -> ApiError:
    return ApiError(413, "body_too_large", f"The body must be at most {MAX_BODY_BYTES} bytes.")


async def read_body(request: Request) -> dict[str, Any]:
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


def parse_set(body: dict[str, Any], reactions: ReactionSet) -> tuple[str, int | None]:
    """The reaction and optional client_ts of a set; 422 naming the first thing wrong."""
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


async def accept(publisher: Publisher, event: ReactionEvent) -> Response:
    """Publish the event and answer 202 once Kafka acknowledged it (503 raised otherwise)."""
    await publisher.publish(event)
    EVENTS.labels(event.op).inc()
    if _std_log.isEnabledFor(logging.DEBUG):
        log.debug("event_accepted", event_id=event.event_id, op=event.op)
    body = orjson.dumps({"accepted": True, "event_id": event.event_id})
    return Response(body, status_code=202, media_type="application/json")


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


def _body_schema(reactions: ReactionSet) -> dict[str, Any]:
    """The PUT body as OpenAPI states it; the handler reads the body itself (see read_body)."""
    return {
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


def add_write_routes(app: FastAPI, reactions: ReactionSet) -> None:
    """PUT and DELETE on a reader's reaction, documented for the configured reaction types."""
    # Added to the app itself, not through an included APIRouter: FastAPI matches included
    # routes lazily, so the request metrics would not see their path template.
    app.add_api_route(
        WRITE_PATH,
        set_reaction,
        methods=["PUT"],
        status_code=202,
        responses={**_WRITE_RESPONSES, **_BODY_RESPONSES},
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": _body_schema(reactions)}},
            }
        },
    )
    app.add_api_route(
        WRITE_PATH, clear_reaction, methods=["DELETE"], status_code=202, responses=_WRITE_RESPONSES
    )
    # Series exist at zero from the start, so rate() and increase() see their first event.
    for op in ("set", "clear"):
        EVENTS.labels(op)
