"""The write path, top to bottom: admit (network limit → reader token → reader limit) →
read the body → parse it → build the event → publish (acks=all) → 202 with the event's
offset; the served app answers a vote through fast.py, which runs these same steps
without the framework. Then the reader-token call (`POST /v1/readers`) and the answer of
the replaced paths. What the OpenAPI document says about each call is in openapi.py."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any, Final

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response
from prometheus_client import Counter
from starlette.requests import ClientDisconnect
from starlette.types import Scope

from services.ingest import openapi
from services.ingest.deps import IngestState, StateDep
from services.ingest.publisher import Publisher
from services.ingest.tokens import new_anonymous_id, rfc3339
from shared.events import (
    ARTICLE_ID_MESSAGE,
    MAX_CLIENT_TS,
    Op,
    ReactionEvent,
    valid_article_id,
    valid_client_ts,
)
from shared.http import ApiError, authenticate
from shared.identity import Reader
from shared.logs import get_logger
from shared.reactions import ReactionSet

log = get_logger(__name__)
# Checked before per-event debug lines so the hot path skips structlog's processors.
_std_log = logging.getLogger(__name__)

MAX_BODY_BYTES: Final = 1024
BODY_FIELDS: Final = frozenset({"article_id", "reaction", "client_ts"})
VOTES_PATH: Final = "/v1/votes"
READERS_PATH: Final = "/v1/readers"
REPLACED_PATH: Final = "/v1/articles/{article_id}/reactions/{user_id}"

EVENTS: Final = Counter(
    "reactions_ingest_events_total",
    "Events acknowledged by Kafka and answered 202, by op (set or clear).",
    ["op"],
)
TOKENS_ISSUED: Final = Counter(
    "reactions_ingest_tokens_issued_total",
    "Reader tokens issued, by kind: new (a new anonymous reader) or renewal.",
    ["kind"],
)


async def vote(request: Request, state: StateDep) -> Response:
    """Set, move or clear the token's reader's reaction on an article."""
    event = await vote_event(state, request.scope, request.headers, request.stream())
    body = await publish_vote(state["publisher"], event)
    return Response(body, status_code=202, media_type="application/json")


async def vote_event(
    state: IngestState,
    scope: Scope,
    headers: Mapping[str, str],
    chunks: AsyncIterator[bytes],
) -> ReactionEvent:
    """Admit a vote and build its event: network limit, token, reader limit, body; raises
    ApiError with the answer otherwise. Shared by the route and the fast path (fast.py)."""
    limits = state["limits"]
    # The network's limit comes before the token: a flood of junk costs no signature check.
    await limits.check("ip", limits.client_hash(scope))
    reader = authenticate(headers.get("authorization"), state["verifier"])
    await limits.check("reader", reader.reader_id)
    article_id, reaction, client_ts = parse_vote(
        await read_body(headers, chunks), state["reactions"]
    )
    op: Op = "set" if reaction is not None else "clear"
    return ReactionEvent.new(
        op, article_id, reader.reader_id, reaction, client_ts, clock_skew_ms=state["clock_skew_ms"]
    )


def _too_large() -> ApiError:
    return ApiError(413, "body_too_large", f"The body must be at most {MAX_BODY_BYTES} bytes.")


async def read_body(headers: Mapping[str, str], chunks: AsyncIterator[bytes]) -> dict[str, Any]:
    """The JSON object body: size checked before anything is parsed, streamed or not."""
    length = headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > MAX_BODY_BYTES):
        raise _too_large()
    content_type = headers.get("content-type", "")
    if content_type.split(";")[0].strip().lower() != "application/json":
        raise ApiError(415, "unsupported_media_type", "The body must be application/json.")
    body = bytearray()
    try:
        async for chunk in chunks:
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


def parse_vote(body: dict[str, Any], reactions: ReactionSet) -> tuple[str, str | None, int | None]:
    """The article, reaction (None clears) and optional client_ts of a vote; 422 naming the
    first thing wrong."""
    unknown = body.keys() - BODY_FIELDS
    if unknown:
        raise ApiError(422, "unknown_field", f"Unknown field(s): {', '.join(sorted(unknown))}.")
    article_id = body.get("article_id")
    if not isinstance(article_id, str) or not valid_article_id(article_id):
        raise ApiError(422, "invalid_article_id", ARTICLE_ID_MESSAGE)
    reaction = body.get("reaction", "")
    if reaction is not None and (not isinstance(reaction, str) or reaction not in reactions):
        raise ApiError(
            422,
            "unknown_reaction",
            f"reaction must be null (to clear) or one of: {', '.join(reactions.ids)}.",
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
    return article_id, reaction, client_ts


async def publish_vote(publisher: Publisher, event: ReactionEvent) -> bytes:
    """Publish the event; once Kafka acknowledged it, the 202's body (503 raised otherwise).

    `seq` is the event's offset: any tally whose `seq` is at least this one includes it.
    """
    seq = await publisher.publish(event)
    EVENTS.labels(event.op).inc()
    if _std_log.isEnabledFor(logging.DEBUG):
        log.debug("event_accepted", event_id=event.event_id, op=event.op, seq=seq)
    return orjson.dumps(
        {"accepted": True, "event_id": event.event_id, "reader_id": event.user_id, "seq": seq}
    )


async def create_reader(request: Request, state: StateDep) -> Response:
    """A new anonymous reader and its token; with a reader's token, a renewed token for
    the same reader."""
    issuer = state["issuer"]
    if issuer is None:
        raise ApiError(
            503,
            "identity_unconfigured",
            "This server has no token signing key (REACTIONS_TOKEN_SIGNING_KEY_FILE).",
            {"Retry-After": "60"},
        )
    await read_empty_body(request)
    limits = state["limits"]
    client = limits.client_hash(request.scope)
    authorization = request.headers.get("authorization")
    if authorization is None:
        await limits.check_issuance(client)
        reader_id, kind = new_anonymous_id(), "new"
    else:
        # A renewal keeps its reader: it counts as that reader's write, not as a new one,
        # and, as for a vote, the network's limit comes before the token's signature check.
        await limits.check("ip", client)
        reader = authenticate(authorization, state["verifier"])
        if reader.kind != "anonymous":
            raise ApiError(400, "not_renewable", "A site's token is renewed by the site, not here.")
        await limits.check("reader", reader.reader_id)
        reader_id, kind = reader.reader_id, "renewal"
    issued = issuer.issue(reader_id)
    # The reader's next call is usually its first vote, often on this same connection.
    state["verifier"].remember(
        issued.token, Reader(issued.reader_id, "anonymous", issued.expires_at)
    )
    TOKENS_ISSUED.labels(kind).inc()
    body = orjson.dumps(
        {
            "reader_id": issued.reader_id,
            "token": issued.token,
            "expires_at": rfc3339(issued.expires_at),
        }
    )
    # A token is a credential: no cache anywhere may keep it.
    return Response(
        body, status_code=201, media_type="application/json", headers={"Cache-Control": "no-store"}
    )


async def read_empty_body(request: Request) -> None:
    """Accept no body or `{}`; anything else is refused as the votes' body would be."""
    headers = request.headers
    if headers.get("content-length", "0") == "0" and "transfer-encoding" not in headers:
        return
    body = await read_body(headers, request.stream())
    if body:
        raise ApiError(
            422, "unknown_field", f"Unknown field(s): {', '.join(sorted(body))}; send no body."
        )


async def endpoint_replaced(request: Request) -> Response:
    """The reader-id-in-the-path calls: a clear refusal, never a silent success."""
    raise ApiError(
        410,
        "endpoint_replaced",
        "This call was replaced: use POST /v1/votes with a reader token (POST /v1/readers) "
        "and the article in the body.",
    )


def add_write_routes(app: FastAPI, reactions: ReactionSet) -> None:
    """The votes, the reader tokens and the replaced paths, documented for the configured
    reaction types."""
    # Added to the app itself, not through an included APIRouter: FastAPI matches included
    # routes lazily, so the request metrics would not see their path template.
    app.add_api_route(
        VOTES_PATH, vote, methods=["POST"], status_code=202, **openapi.vote(reactions)
    )
    app.add_api_route(
        READERS_PATH, create_reader, methods=["POST"], status_code=201, **openapi.new_reader()
    )
    # Left out of the OpenAPI document: it describes the calls to use, not the old ones.
    app.add_api_route(
        REPLACED_PATH, endpoint_replaced, methods=["PUT", "DELETE"], include_in_schema=False
    )
    # Series exist at zero from the start, so rate() and increase() see their first event.
    for op in ("set", "clear"):
        EVENTS.labels(op)
    for kind in ("new", "renewal"):
        TOKENS_ISSUED.labels(kind)
