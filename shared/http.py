"""What every HTTP service shares: the error shape and its handlers, CORS in that shape,
reader authentication (401s and their challenge), and the ops endpoints."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Final

from aiokafka.errors import KafkaError
from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, ORJSONResponse, Response
from prometheus_client import Counter
from pydantic import BaseModel, Field
from redis.asyncio import Redis
from redis.exceptions import RedisError
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from shared.identity import REFUSAL_REASONS, Reader, TokenError, Verifier, bearer_token
from shared.logs import get_logger
from shared.metrics import render_metrics

log = get_logger(__name__)

_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    410: "gone",
    413: "body_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "rate_limited",
    503: "unavailable",
}


class ErrorDetail(BaseModel):
    """What went wrong, for programs (`code`) and people (`message`)."""

    code: str = Field(examples=["invalid_article_id"])
    message: str


class ErrorBody(BaseModel):
    """Every error answer of the HTTP contract."""

    error: ErrorDetail


class ApiError(Exception):
    """An error answered as `{"error": {"code", "message"}}` with its HTTP status."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})


def error_response(
    status: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    """The one error body of the HTTP contract."""
    return ORJSONResponse(
        {"error": {"code": code, "message": message}}, status_code=status, headers=headers
    )


_VARY: Final = (b"vary", b"Origin")


class CorsHeaders:
    """What the app's CORS middleware (Starlette's, with these settings and no credentials)
    adds to a response that is not a preflight, by the request's Origin: for the services'
    answers written without the framework."""

    def __init__(self, allow_origins: Sequence[str], expose_headers: Sequence[str] = ()) -> None:
        self._allow_all = "*" in allow_origins
        self._allowed = frozenset(allow_origins)
        expose = (
            [(b"access-control-expose-headers", ", ".join(expose_headers).encode())]
            if expose_headers
            else []
        )
        self._expose = expose
        self._without_origin: list[tuple[bytes, bytes]] = [_VARY]
        self._any_origin = [(b"access-control-allow-origin", b"*"), *expose, _VARY]
        self._refused = [*expose, _VARY]

    def for_origin(self, origin: bytes | None) -> list[tuple[bytes, bytes]]:
        """The headers for a request with this Origin header (None: it had none)."""
        if origin is None:
            return self._without_origin
        if self._allow_all:
            return self._any_origin
        if origin.decode("latin-1") in self._allowed:
            return [*self._expose, (b"access-control-allow-origin", origin), _VARY]
        return self._refused


class ContractCors(CORSMiddleware):
    """Starlette's CORS, with refused preflights answered in the contract's error shape."""

    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code == 200:
            return response
        reason = bytes(response.body).decode(errors="replace")
        return error_response(400, "cors_rejected", f"{reason}.", {"Vary": "Origin"})


# No call of either service takes more than a few query parameters. Parsing thousands of them
# (`?ids=a&ids=a&…`, 2,600 in a 16 KB URL the edge lets through) costs the framework
# milliseconds before any check could refuse them: 25 times a page's read of 100 ids.
MAX_QUERY_PARAMETERS: Final = 16
TOO_MANY_PARAMETERS: Final[dict[int | str, dict[str, Any]]] = {
    400: {
        "model": ErrorBody,
        "description": f"More than {MAX_QUERY_PARAMETERS} query parameters (too_many_parameters).",
    },
}


def too_many_parameters(scope: Scope) -> bool:
    """Whether the request's query string has more than MAX_QUERY_PARAMETERS parameters."""
    query: bytes = scope["query_string"]
    return query.count(b"&") >= MAX_QUERY_PARAMETERS


class QueryLimit:
    """ASGI middleware answering `400 too_many_parameters` to a query string of more than
    MAX_QUERY_PARAMETERS parameters, before anything parses it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and too_many_parameters(scope):
            response = error_response(
                400,
                "too_many_parameters",
                f"A request takes at most {MAX_QUERY_PARAMETERS} query parameters.",
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


def install_error_handlers(app: FastAPI) -> None:
    """Route every error, expected or not, through the contract's error shape."""

    async def on_api_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return error_response(exc.status, exc.code, exc.message, exc.headers)

    async def on_http_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        code = _STATUS_CODES.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail), exc.headers)

    async def on_validation_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return error_response(422, "invalid_request", describe_validation_errors(exc.errors()))

    async def on_unexpected(request: Request, exc: Exception) -> Response:
        log.error("unhandled_error", path=request.url.path, exc_info=exc)
        return error_response(500, "internal_error", "An unexpected error occurred.")

    app.add_exception_handler(ApiError, on_api_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(Exception, on_unexpected)


def describe_validation_errors(errors: object) -> str:
    """One human sentence from pydantic's error list."""
    if not isinstance(errors, list | tuple) or not errors:
        return "The request is invalid."
    parts = []
    for err in errors[:3]:
        if not isinstance(err, dict):
            continue
        loc = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "path", "query"))
        msg = str(err.get("msg", "is invalid"))
        parts.append(f"{loc}: {msg}" if loc else msg)
    return ("; ".join(parts) or "The request is invalid.") + "."


REALM: Final = "reactions"
# The OpenAPI name of the reader-token scheme, as the calls that need a token list it.
BEARER_SCHEME: Final = "readerToken"
TOKEN_REJECTIONS: Final = Counter(
    "reactions_token_rejections_total",
    "Requests refused with 401 because of their reader token, by reason (missing, malformed, "
    "expired, bad_signature, unknown_key, wrong_issuer, wrong_audience, bad_claims, ...).",
    ["reason"],
)

# What verification costs a service is nearly all in these: a remembered token costs a
# dictionary lookup. Counted by the Verifier (`on_check`), once the app has built it.
TOKEN_CHECKS: Final = Counter(
    "reactions_token_checks_total",
    "Reader tokens verified in full (signature and claims) rather than found among the "
    "tokens this process has verified or signed; refused tokens count too.",
)


def count_token_rejections_from_zero() -> None:
    """Create every reason's series at zero, so rate() and increase() see the first one."""
    for reason in REFUSAL_REASONS:
        TOKEN_REJECTIONS.labels(reason)


def authenticate(authorization: str | None, verifier: Verifier) -> Reader:
    """The reader of an `Authorization: Bearer` header; 401 with a challenge otherwise."""
    try:
        return verifier.verify(bearer_token(authorization))
    except TokenError as exc:
        TOKEN_REJECTIONS.labels(exc.reason).inc()
        raise unauthorized(exc) from None


def unauthorized(exc: TokenError) -> ApiError:
    """The 401 of a refused token, with its RFC 6750 challenge (no error code when the
    request carried no token at all)."""
    challenge = f'Bearer realm="{REALM}"'
    if exc.code != "missing_token":
        challenge += f', error="invalid_token", error_description="{exc.description}"'
    return ApiError(401, exc.code, exc.description, {"WWW-Authenticate": challenge})


UNAUTHORIZED_RESPONSE: Final[dict[str, Any]] = {
    "model": ErrorBody,
    "description": "No reader token, or one that is malformed, expired, wrongly signed or "
    "meant for another issuer or audience (codes missing_token, invalid_token, "
    "expired_token).",
    "headers": {
        "WWW-Authenticate": {
            "description": 'The Bearer challenge: realm="reactions" and, for a token that '
            "was sent, error and error_description.",
            "required": True,
            "schema": {"type": "string"},
        }
    },
}


def declare_bearer_scheme(app: FastAPI) -> None:
    """Name the reader-token scheme (HTTP bearer, a JWT) in the app's OpenAPI document."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        schema = generate()  # cached by FastAPI after the first call; amended in place
        schemes = schema.setdefault("components", {}).setdefault("securitySchemes", {})
        schemes[BEARER_SCHEME] = {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": "A reader token: from POST /v1/readers on ingest, or the site's "
            "own token for a logged-in reader.",
        }
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


ReadyCheck = Callable[[Request], Awaitable[dict[str, bool]]]
# A readiness probe waits at most this long for a dependency: an orchestrator's probe has
# its own timeout, and a hung dependency must read as "not ready", not as a hung probe.
PROBE_TIMEOUT_S: Final = 1.0


async def redis_reachable(redis: Redis) -> bool:
    """True when Redis answers PING within the probe timeout."""
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_S):
            return bool(await redis.ping())
    except (TimeoutError, RedisError, OSError):
        return False


async def kafka_reachable(client: Any) -> bool:
    """True when an aiokafka client (`producer.client`, `consumer._client`) gets the
    cluster's metadata within the probe timeout."""
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_S):
            await client.fetch_all_metadata()
    except (TimeoutError, KafkaError, OSError):
        return False
    return True


def ops_router(ready_check: ReadyCheck) -> APIRouter:
    """`/healthz` (process alive), `/readyz` (dependencies reachable) and `/metrics`."""
    router = APIRouter(include_in_schema=False)

    @router.get("/healthz")
    async def healthz() -> Response:
        return ORJSONResponse({"status": "ok"})

    @router.get("/readyz")
    async def readyz(request: Request) -> Response:
        checks = await ready_check(request)
        ready = all(checks.values())
        return ORJSONResponse(
            {"status": "ready" if ready else "not_ready", "checks": checks},
            status_code=200 if ready else 503,
        )

    @router.get("/metrics")
    async def metrics() -> Response:
        body, content_type = render_metrics()
        return Response(body, media_type=content_type)

    return router
