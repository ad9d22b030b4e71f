"""The two public count reads, answered without the framework.

`GET /v1/articles/{article_id}/reactions` and `GET /v1/reactions?ids=…` are nearly all of
a reader's requests. Through FastAPI each paid for routing, dependency solving, a Request
and a Response object, and the CORS and metrics middlewares: several times the cost of a
cached read (README, Performance). `HotReads`, wrapped around the app, answers a plain
one from the store's pre-rendered bytes with headers written here: the same status,
body, headers (CORS included), ETag and 304 as the routes in `routes/tallies.py`, counted
in the same request metrics. Anything else — a query string on the single read, more
than `ids` on the bulk one, an id or list the routes would refuse — goes to the app,
whose routes stay the reference and answer every error; tests/reader check that both
answer alike.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Final
from urllib.parse import unquote_plus

from prometheus_client import Counter
from starlette.types import ASGIApp, Receive, Scope, Send

from services.reader.responses import PUBLIC_CACHE, etag_matches, redis_unavailable_as_503
from services.reader.routes.tallies import parse_bulk_ids
from services.reader.store import RenderedTally, TallyStore, bulk_body
from shared.events import valid_article_id
from shared.http import ApiError, CorsHeaders, error_response
from shared.metrics import HTTP_LATENCY, HTTP_REQUESTS

ONE_ROUTE: Final = "/v1/articles/{article_id}/reactions"
BULK_ROUTE: Final = "/v1/reactions"
_ONE_PREFIX: Final = "/v1/articles/"
_ONE_SUFFIX: Final = "/reactions"
_CACHE_CONTROL: Final = (b"cache-control", PUBLIC_CACHE.encode())
_JSON: Final = (b"content-type", b"application/json")

Headers = list[tuple[bytes, bytes]]


class HotReads:
    """ASGI wrapper answering plain count reads from pre-rendered tallies; the rest goes on
    to `app`."""

    def __init__(self, app: ASGIApp, allow_origins: Sequence[str]) -> None:
        self.app = app
        self.cors = CorsHeaders(allow_origins, ["ETag"])
        self._latency = {route: HTTP_LATENCY.labels(route) for route in (ONE_ROUTE, BULK_ROUTE)}
        self._answered: dict[tuple[str, int], Counter] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            path: str = scope["path"]
            if path == BULK_ROUTE:
                answered = await self._bulk(scope, send)
            elif path.startswith(_ONE_PREFIX) and path.endswith(_ONE_SUFFIX):
                answered = await self._one(scope, send, path[len(_ONE_PREFIX) : -len(_ONE_SUFFIX)])
            else:
                answered = False
            if answered:
                return
        await self.app(scope, receive, send)

    async def _one(self, scope: Scope, send: Send, article_id: str) -> bool:
        """Answer one article's tally; False (nothing sent) for the app to answer."""
        started = time.perf_counter()
        if scope["query_string"] or not valid_article_id(article_id):
            return False
        store: TallyStore = scope["state"]["store"]
        tally: RenderedTally | None = store.fresh(article_id)
        if tally is None:
            try:
                with redis_unavailable_as_503():
                    tally = await store.tally(article_id)
            except ApiError as exc:
                await self._error(scope, send, ONE_ROUTE, exc, started)
                return True
        await self._validated(scope, send, ONE_ROUTE, tally.body, tally.etag, started)
        return True

    async def _bulk(self, scope: Scope, send: Send) -> bool:
        """Answer the tallies of `?ids=`; False (nothing sent) for the app to answer."""
        started = time.perf_counter()
        query: bytes = scope["query_string"]
        if not query.startswith(b"ids=") or b"&" in query:
            return False
        raw = query[4:].decode("latin-1")
        # Decoded as the framework decodes a query string (UTF-8, bad bytes replaced).
        text = unquote_plus(raw) if "%" in raw or "+" in raw else raw
        try:
            article_ids = parse_bulk_ids(text)
        except ApiError:
            return False
        store: TallyStore = scope["state"]["store"]
        try:
            with redis_unavailable_as_503():
                tallies = await store.tallies(article_ids)
        except ApiError as exc:
            await self._error(scope, send, BULK_ROUTE, exc, started)
            return True
        body, etag = bulk_body(tallies)
        await self._validated(scope, send, BULK_ROUTE, body, etag, started)
        return True

    async def _validated(
        self, scope: Scope, send: Send, route: str, body: bytes, etag: bytes, started: float
    ) -> None:
        """`body` with its ETag and the public cache policy, or 304 when the client has it."""
        if_none_match = origin = None
        for name, value in scope["headers"]:
            if name == b"if-none-match" and if_none_match is None:
                if_none_match = value
            elif name == b"origin" and origin is None:
                origin = value
        cors = self.cors.for_origin(origin)
        if if_none_match is not None and (
            if_none_match == etag or etag_matches(if_none_match.decode("latin-1"), etag.decode())
        ):
            headers = [_CACHE_CONTROL, (b"etag", etag), *cors]
            await self._send(send, route, 304, headers, b"", started)
            return
        headers = [
            _CACHE_CONTROL,
            (b"etag", etag),
            (b"content-length", b"%d" % len(body)),
            _JSON,
            *cors,
        ]
        await self._send(send, route, 200, headers, body, started)

    async def _error(
        self, scope: Scope, send: Send, route: str, exc: ApiError, started: float
    ) -> None:
        """The contract's error answer, as the app's error handler renders it."""
        response = error_response(exc.status, exc.code, exc.message, exc.headers)
        origin = next((v for k, v in scope["headers"] if k == b"origin"), None)
        headers = [*response.raw_headers, *self.cors.for_origin(origin)]
        await self._send(send, route, exc.status, headers, bytes(response.body), started)

    async def _send(
        self, send: Send, route: str, status: int, headers: Headers, body: bytes, started: float
    ) -> None:
        await send({"type": "http.response.start", "status": status, "headers": headers})
        self._latency[route].observe(time.perf_counter() - started)
        answered = self._answered.get((route, status))
        if answered is None:
            answered = self._answered[route, status] = HTTP_REQUESTS.labels(
                route, "GET", str(status)
            )
        answered.inc()
        await send({"type": "http.response.body", "body": body})
