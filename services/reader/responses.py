"""What the reader's routes answer alike: cache policies, ETag validation, the 503 on Redis
failure, and the error responses the OpenAPI document lists."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Final

from fastapi import Request
from fastapi.responses import Response
from redis.exceptions import RedisError

from services.reader.view import ViewRebuilding
from shared.http import MAX_QUERY_PARAMETERS, ApiError, ErrorBody

# The contract's cache policy: shared caches may keep a public tally one second and serve
# it stale while revalidating; a reader's own choice is never stored anywhere.
PUBLIC_CACHE: Final = "public, max-age=1, stale-while-revalidate=5"
PRIVATE_CACHE: Final = "private, no-store"

ERRORS: Final[dict[int | str, dict[str, Any]]] = {
    422: {"model": ErrorBody, "description": "Invalid identifier or parameter."},
    503: {
        "model": ErrorBody,
        "description": "Redis unavailable (redis_unavailable), or the counts being rebuilt "
        "from the log after Redis lost its data or before the first aggregator started "
        "(rebuilding); retry (see Retry-After).",
    },
}
USER_ID_REFUSED: Final[dict[int | str, dict[str, Any]]] = {
    400: {
        "model": ErrorBody,
        "description": "A user_id parameter: count reads carry no identity "
        "(user_id_not_supported); a reader's own reactions come from GET /v1/me/reactions. "
        f"Or more than {MAX_QUERY_PARAMETERS} query parameters (too_many_parameters).",
    },
}


def refuse_user_id(request: Request) -> None:
    """400 for the old `?user_id=`: counts are public, a reader's own votes need a token."""
    if "user_id" in request.query_params:
        raise ApiError(
            400,
            "user_id_not_supported",
            "Count reads carry no identity: read your own reactions with "
            "GET /v1/me/reactions?ids=… and a reader token (Authorization: Bearer).",
        )


@contextmanager
def redis_unavailable_as_503() -> Iterator[None]:
    """Answer a Redis failure, or a view being rebuilt, with 503 and Retry-After instead of
    an internal error or counts that are only part of the log."""
    try:
        yield
    except (RedisError, OSError, TimeoutError) as exc:
        raise ApiError(
            503,
            "redis_unavailable",
            "Tallies are unavailable right now; please retry shortly.",
            {"Retry-After": "1", "Cache-Control": "no-store"},
        ) from exc
    except ViewRebuilding as exc:
        raise ApiError(
            503,
            "rebuilding",
            "Tallies are being rebuilt from the log (Redis lost its data, or no aggregator has "
            "started on it yet); please retry shortly.",
            {"Retry-After": "5", "Cache-Control": "no-store"},
        ) from exc


def etag_of(body: bytes) -> str:
    """A strong validator for a response body."""
    return '"' + hashlib.blake2b(body, digest_size=12).hexdigest() + '"'


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """RFC 9110 weak comparison of If-None-Match against our ETag."""
    if not if_none_match:
        return False
    if if_none_match.strip() == "*":
        return True
    return any(tag.strip().removeprefix("W/") == etag for tag in if_none_match.split(","))


def validated_response(
    request: Request,
    body: bytes,
    media_type: str,
    headers: dict[str, str],
    etag: str | None = None,
) -> Response:
    """`body` with its ETag (computed unless given), or 304 when the client already has it."""
    etag = etag or etag_of(body)
    headers = {**headers, "ETag": etag}
    if etag_matches(request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers=headers)
    return Response(body, media_type=media_type, headers=headers)
