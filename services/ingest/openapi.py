"""What ingest's OpenAPI document says about each call: bodies, answers, security.

The handlers read their bodies themselves (routes.py), so the schemas are stated here, for
the configured reaction types; a schemathesis run in the tests holds the service to them.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from shared.events import ARTICLE_ID_PATTERN, MAX_CLIENT_TS, USER_ID_PATTERN
from shared.http import BEARER_SCHEME, MAX_QUERY_PARAMETERS, UNAUTHORIZED_RESPONSE, ErrorBody
from shared.reactions import ReactionSet

MAX_BODY_BYTES = 1024


class Accepted(BaseModel):
    """The 202 body: Kafka acknowledged the event."""

    accepted: bool
    event_id: str
    reader_id: str = Field(pattern=USER_ID_PATTERN, description="The token's reader.")
    seq: int = Field(
        ge=0,
        description="The event's offset: a tally whose seq is at least this one includes it.",
    )


class IssuedReader(BaseModel):
    """The 201 body: a reader token and what it says."""

    reader_id: str = Field(pattern=USER_ID_PATTERN, examples=["a.Zk3nQ0b1YQ2mM5hXx9e7Lw"])
    token: str = Field(description="Send it as `Authorization: Bearer <token>`.")
    expires_at: str = Field(description="RFC 3339, UTC; renew before it.")


_RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before retrying.",
        "required": True,
        "schema": {"type": "integer", "minimum": 1},
    }
}
_BODY_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {
        "model": ErrorBody,
        "description": "The body is not valid JSON, or the URL has more than "
        f"{MAX_QUERY_PARAMETERS} query parameters (too_many_parameters).",
    },
    413: {"model": ErrorBody, "description": f"The body is over {MAX_BODY_BYTES} bytes."},
    415: {"model": ErrorBody, "description": "The body is not application/json."},
}
_LIMITED: dict[int | str, dict[str, Any]] = {
    429: {"model": ErrorBody, "description": "Rate limited.", "headers": _RETRY_AFTER},
}


def vote(reactions: ReactionSet) -> dict[str, Any]:
    """`POST /v1/votes`: a token-carrying write of one reaction (or a clear)."""
    body = {
        "type": "object",
        "additionalProperties": False,
        "required": ["article_id", "reaction"],
        "examples": [
            {"article_id": "story-1", "reaction": reactions.ids[0], "client_ts": 1725300000000},
            {"article_id": "story-1", "reaction": None},
        ],
        "properties": {
            "article_id": {"type": "string", "pattern": ARTICLE_ID_PATTERN},
            "reaction": {
                "anyOf": [
                    {"type": "string", "enum": list(reactions.ids)},
                    {"type": "null"},
                ],
                "description": "The reaction to set, or null to clear the reader's.",
            },
            "client_ts": {
                "type": "integer",
                "minimum": 1,
                "maximum": MAX_CLIENT_TS,
                "description": "The client's clock in ms; the newer write per reader wins. "
                "A value further ahead of the server's clock than REACTIONS_CLIENT_CLOCK_SKEW_MS "
                "(5 minutes by default) is stored as that bound.",
            },
        },
    }
    return {
        "summary": "Set, move or clear the token's reader's reaction on an article",
        "responses": {
            202: {"model": Accepted, "description": "Acknowledged by Kafka (acks=all)."},
            **_BODY_ERRORS,
            401: UNAUTHORIZED_RESPONSE,
            422: {
                "model": ErrorBody,
                "description": "Unknown reaction, bad article id, field or client_ts.",
            },
            **_LIMITED,
            503: {"model": ErrorBody, "description": "Kafka unavailable.", "headers": _RETRY_AFTER},
        },
        "openapi_extra": {
            "security": [{BEARER_SCHEME: []}],
            "requestBody": {"required": True, "content": {"application/json": {"schema": body}}},
        },
    }


def new_reader() -> dict[str, Any]:
    """`POST /v1/readers`: a new anonymous reader, or with a token the renewal of its own."""
    return {
        "summary": "A new anonymous reader token, or a renewed one for the token's reader",
        "description": "Without a token: a new anonymous reader, rate-limited per client "
        "network. With a reader token issued here: a fresh token for the same reader (a "
        "site's token is renewed by the site: 400 not_renewable).",
        "responses": {
            201: {"model": IssuedReader, "description": "A signed reader token."},
            400: {
                "model": ErrorBody,
                "description": "Not JSON, a site's token, or more than "
                f"{MAX_QUERY_PARAMETERS} query parameters (too_many_parameters).",
            },
            401: UNAUTHORIZED_RESPONSE,
            413: _BODY_ERRORS[413],
            415: _BODY_ERRORS[415],
            422: {"model": ErrorBody, "description": "A body other than {}."},
            **_LIMITED,
            503: {
                "model": ErrorBody,
                "description": "The limit store cannot count new readers (it fails closed), "
                "or no signing key is configured.",
                "headers": _RETRY_AFTER,
            },
        },
        "openapi_extra": {
            # The token is optional: {} lists "no credentials" as an accepted alternative.
            "security": [{}, {BEARER_SCHEME: []}],
            "requestBody": {
                "required": False,
                "content": {
                    "application/json": {
                        "schema": {"type": "object", "additionalProperties": False}
                    }
                },
            },
        },
    }
