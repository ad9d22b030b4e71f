"""`POST /v1/votes` answered without the framework.

A vote is nearly every request ingest serves. Through FastAPI each paid for five
middlewares, routing, dependency solving and a Request and a Response object: measured with
`make profile`, about a third of a vote's CPU (README, Performance). `FastVotes`, wrapped
around the app, runs the route's own steps (routes.vote_event, routes.publish_vote: same
limits, token check, body checks, event and acks=all publish) and writes the answer itself:
the same status, body and headers (CORS included), every error in the contract's shape,
counted in the same request metrics. Every other request goes on to the app, whose route
for votes stays the reference; tests/ingest check that both answer alike.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from typing import Final

from prometheus_client import Counter
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Receive, Scope, Send

from services.ingest.routes import VOTES_PATH, publish_vote, vote_event
from shared.http import ApiError, CorsHeaders, error_response, too_many_parameters
from shared.logs import get_logger
from shared.metrics import HTTP_LATENCY, HTTP_REQUESTS

log = get_logger(__name__)

_JSON: Final = (b"content-type", b"application/json")


class FastVotes:
    """ASGI wrapper answering `POST /v1/votes`; everything else goes on to `app`."""

    def __init__(self, app: ASGIApp, allow_origins: Sequence[str]) -> None:
        self.app = app
        self.cors = CorsHeaders(allow_origins)
        self._latency = HTTP_LATENCY.labels(VOTES_PATH)
        # Label lookups take a lock and build a key: done once per status, not per vote.
        self._answered: dict[int, Counter] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] == "POST"
            and scope["path"] == VOTES_PATH
            and not too_many_parameters(scope)  # the app's answer: 400
        ):
            await self._vote(scope, receive, send)
            return
        await self.app(scope, receive, send)

    async def _vote(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        # Starlette's Headers: the first of a repeated header, names already lower case.
        headers: dict[str, str] = {}
        for name, value in scope["headers"]:
            headers.setdefault(name.decode("latin-1"), value.decode("latin-1"))
        state = scope["state"]
        try:
            event = await vote_event(state, scope, headers, _body_chunks(receive))
            body = await publish_vote(state["publisher"], event)
        except ApiError as exc:
            await self._error(send, headers, exc, started)
            return
        except Exception as exc:
            # Answered and logged as the app's handler of unexpected errors does.
            log.error("unhandled_error", path=VOTES_PATH, exc_info=exc)
            unexpected = ApiError(500, "internal_error", "An unexpected error occurred.")
            await self._error(send, headers, unexpected, started)
            return
        response_headers = [
            (b"content-length", b"%d" % len(body)),
            _JSON,
            *self.cors.for_origin(_origin(headers)),
        ]
        await self._send(send, 202, response_headers, body, started)

    async def _error(
        self,
        send: Send,
        headers: dict[str, str],
        exc: ApiError,
        started: float,
    ) -> None:
        """The contract's error answer, as the app's error handler renders it."""
        response = error_response(exc.status, exc.code, exc.message, exc.headers)
        response_headers = [*response.raw_headers, *self.cors.for_origin(_origin(headers))]
        await self._send(send, exc.status, response_headers, bytes(response.body), started)

    async def _send(
        self,
        send: Send,
        status: int,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        started: float,
    ) -> None:
        await send({"type": "http.response.start", "status": status, "headers": headers})
        self._latency.observe(time.perf_counter() - started)
        answered = self._answered.get(status)
        if answered is None:
            answered = self._answered[status] = HTTP_REQUESTS.labels(
                VOTES_PATH, "POST", str(status)
            )
        answered.inc()
        await send({"type": "http.response.body", "body": body})


def _origin(headers: dict[str, str]) -> bytes | None:
    origin = headers.get("origin")
    return origin.encode("latin-1") if origin is not None else None


async def _body_chunks(receive: Receive) -> AsyncIterator[bytes]:
    """The request body as it arrives, as Starlette's Request.stream() gives it."""
    while True:
        message = await receive()
        if message["type"] == "http.request":
            chunk: bytes = message.get("body", b"")
            if chunk:
                yield chunk
            if not message.get("more_body", False):
                return
        elif message["type"] == "http.disconnect":
            raise ClientDisconnect()
