"""The read path: tallies (one or many), live tallies over SSE, trending, the widget."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import html
import random
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path as FilePath
from typing import Annotated, Any, Final, Literal

import orjson
from fastapi import FastAPI, Query, Request
from fastapi.responses import ORJSONResponse, Response
from pydantic import BaseModel, Field
from redis.asyncio import Redis
from redis.exceptions import RedisError
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.types import Receive, Scope, Send

from services.reader.cache import Counts, TallyCache
from services.reader.config import ReaderSettings
from services.reader.live import SSE_MESSAGES, ChangeFeed, Mailbox
from services.reader.trending import MAX_LIMIT, Trending
from shared.events import ARTICLE_ID_MESSAGE, valid_article_id
from shared.http import (
    ApiError,
    ContractCors,
    ErrorBody,
    install_error_handlers,
    ops_router,
    redis_reachable,
)
from shared.metrics import RequestMetrics
from shared.params import ArticleIdPath, UserIdQuery, check_article_id, check_user_id
from shared.reactions import ReactionSet
from shared.tallies import (
    connect_redis,
    counts_key,
    parse_counts,
    parse_reader_state,
    readers_key,
)

STATIC_DIR: Final = FilePath(__file__).parent / "static"
MAX_BULK_IDS: Final = 100
DEMO_ARTICLE: Final = "demo-night-market"
# The contract's cache policy: shared caches may keep a public tally one second and serve
# it stale while revalidating; a reader's own choice is never stored anywhere.
PUBLIC_CACHE: Final = "public, max-age=1, stale-while-revalidate=5"
PRIVATE_CACHE: Final = "private, no-store"
WIDGET_CACHE: Final = "public, max-age=300"
# The SSE send rate limit per article (the contract's "at most 4 a second").
SSE_INTERVAL_S: Final = 0.25
# A client whose socket accepts nothing for this long is dropped.
SSE_SEND_TIMEOUT_S: Final = 30.0


class TallyBody(BaseModel):
    """One article's zero-filled counts; `mine` only when `user_id` was given."""

    article_id: str
    counts: dict[str, int] = Field(examples=[{"like": 3, "love": 1}])
    total: int
    mine: str | None = Field(None, description="Present only with user_id.")


class BulkEntry(BaseModel):
    counts: dict[str, int]
    total: int
    mine: str | None = Field(None, description="Present only with user_id.")


class BulkBody(BaseModel):
    """Tallies of several articles, keyed by article id (duplicates answered once)."""

    articles: dict[str, BulkEntry]


class TrendingArticle(BaseModel):
    article_id: str
    count: int


class TrendingBody(BaseModel):
    reaction: str
    window: str
    articles: list[TrendingArticle]


class ReactionTypeBody(BaseModel):
    id: str
    label: str
    emoji: str


class ConfigBody(BaseModel):
    reactions: list[ReactionTypeBody]


ERRORS: Final[dict[int | str, dict[str, Any]]] = {
    422: {"model": ErrorBody, "description": "Invalid identifier or parameter."},
    503: {"model": ErrorBody, "description": "Redis unavailable; retry (see Retry-After)."},
}


@contextmanager
def redis_unavailable_as_503() -> Iterator[None]:
    """Answer a Redis failure with 503 and Retry-After instead of an internal error."""
    try:
        yield
    except (RedisError, OSError, TimeoutError) as exc:
        raise ApiError(
            503,
            "redis_unavailable",
            "Tallies are unavailable right now; please retry shortly.",
            {"Retry-After": "1", "Cache-Control": "no-store"},
        ) from exc


def parse_bulk_ids(raw: str) -> list[str]:
    """Distinct article ids of `?ids=`, in order; empty items (a trailing comma) are ignored."""
    ids = list(dict.fromkeys(i for i in raw.split(",") if i))
    if not ids:
        raise ApiError(422, "invalid_ids", "ids must list 1 to 100 article ids, comma-separated.")
    if len(ids) > MAX_BULK_IDS:
        raise ApiError(
            422, "too_many_ids", f"ids lists {len(ids)} articles; at most {MAX_BULK_IDS} per call."
        )
    for article_id in ids:
        if not valid_article_id(article_id):
            shown = article_id if len(article_id) <= 40 else article_id[:40] + "…"
            raise ApiError(422, "invalid_article_id", f"{shown!r}: {ARTICLE_ID_MESSAGE}")
    return ids


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
    request: Request, body: bytes, media_type: str, headers: dict[str, str]
) -> Response:
    """`body` with its ETag, or 304 when the client already has it."""
    etag = etag_of(body)
    headers = {**headers, "ETag": etag}
    if etag_matches(request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers=headers)
    return Response(body, media_type=media_type, headers=headers)


class TallyStream(EventSourceResponse):
    """An SSE response that releases its mailbox however the stream ends."""

    def __init__(
        self, content: AsyncIterator[ServerSentEvent], close: Callable[[], None], **kw: Any
    ) -> None:
        super().__init__(content, **kw)
        self._close = close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._close()


class TallyStore:
    """Tallies from Redis through the micro-cache, rendered as the contract's JSON."""

    def __init__(
        self, redis: Redis, reactions: ReactionSet, cache_ttl: float, entries: int
    ) -> None:
        self.redis = redis
        self.reaction_ids = reactions.ids
        self.cache = TallyCache(self._load, ttl=cache_ttl, max_entries=entries)

    async def _load(self, article_ids: Sequence[str]) -> list[Counts]:
        fields = list(self.reaction_ids)
        if len(article_ids) == 1:
            rows = [await self.redis.hmget(counts_key(article_ids[0]), fields)]
        else:
            pipe = self.redis.pipeline(transaction=False)
            for article_id in article_ids:
                pipe.hmget(counts_key(article_id), fields)
            rows = await pipe.execute()
        return [parse_counts(row) for row in rows]

    async def snapshot(
        self, article_ids: Sequence[str], user_id: str
    ) -> tuple[list[Counts], list[str | None]]:
        """Counts and the reader's reaction of each article, read together in one round trip.

        Not from the cache: the widget compares `mine` with the counts to know whether they
        include its reader's vote, so both must come from the same moment. One article is
        read in MULTI (its keys share a slot); several with each pair adjacent.
        """
        fields = list(self.reaction_ids)
        pipe = self.redis.pipeline(transaction=len(article_ids) == 1)
        for article_id in article_ids:
            pipe.hmget(counts_key(article_id), fields)
            pipe.hget(readers_key(article_id), user_id)
        replies = await pipe.execute()
        counts: list[Counts] = []
        mines: list[str | None] = []
        for row, raw in zip(replies[::2], replies[1::2], strict=True):
            counts.append(parse_counts(row))
            state = parse_reader_state(raw)
            mines.append(state.reaction or None if state else None)
        return counts, mines

    async def entries(
        self, article_ids: Sequence[str], user_id: str | None
    ) -> list[dict[str, Any]]:
        """Counts, total (and `mine` with a user) of each distinct article."""
        mines: list[str | None] = []
        if user_id is None:
            all_counts = await self.cache.get_many(article_ids)
        else:
            all_counts, mines = await self.snapshot(article_ids, user_id)
        out = []
        for i, counts in enumerate(all_counts):
            entry: dict[str, Any] = {
                "counts": dict(zip(self.reaction_ids, counts, strict=True)),
                "total": sum(counts),
            }
            if user_id is not None:
                entry["mine"] = mines[i]
            out.append(entry)
        return out

    async def render(self, article_id: str, user_id: str | None = None) -> bytes:
        """The plain GET's JSON body for one article."""
        (entry,) = await self.entries([article_id], user_id)
        return orjson.dumps({"article_id": article_id, **entry})


def create_app(settings: ReaderSettings) -> FastAPI:
    """The reader application; Redis, cache, live feed and trending live in its lifespan."""
    reactions: ReactionSet = settings.reaction_set()
    config_body = orjson.dumps({"reactions": [t.model_dump() for t in reactions.types]})
    widget_js = (STATIC_DIR / "widget.js").read_bytes()
    widget_gz = gzip.compress(widget_js, 9, mtime=0)
    widget_etag = etag_of(widget_js)
    demo_template = (STATIC_DIR / "demo.html").read_text()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        redis = connect_redis(
            settings.redis_url,
            cluster=settings.redis_cluster,
            socket_timeout=2.0,
            socket_connect_timeout=2.0,
        )
        store = TallyStore(
            redis, reactions, settings.reader_cache_ttl_ms / 1000, settings.reader_cache_entries
        )
        feed = ChangeFeed(redis, store.cache, store.render, interval=SSE_INTERVAL_S)
        app.state.redis = redis
        app.state.store = store
        app.state.feed = feed
        app.state.trending = Trending(redis, ttl=settings.trending_cache_ms / 1000)
        try:
            yield
        finally:
            await feed.close()
            await redis.aclose()

    app = FastAPI(
        title="Reactions reader",
        version="1",
        description="Tallies, live tallies (SSE), trending and the embeddable widget.",
        lifespan=lifespan,
        default_response_class=ORJSONResponse,
    )
    install_error_handlers(app)
    app.add_middleware(
        ContractCors,
        allow_origins=settings.origins,
        allow_methods=["GET"],
        allow_credentials=False,
        expose_headers=["ETag"],
        max_age=600,
    )
    app.add_middleware(RequestMetrics)

    async def ready(request: Request) -> dict[str, bool]:
        return {"redis": await redis_reachable(request.app.state.redis)}

    app.include_router(ops_router(ready))

    @app.get(
        "/v1/articles/{article_id}/reactions",
        response_model=None,
        responses={200: {"model": TallyBody}, 304: {"description": "Not modified."}, **ERRORS},
    )
    async def get_tally(
        article_id: ArticleIdPath, request: Request, user_id: UserIdQuery = None
    ) -> Response:
        """The zero-filled tally of one article, and the reader's own choice with user_id."""
        check_article_id(article_id)
        check_user_id(user_id)
        with redis_unavailable_as_503():
            body = await request.app.state.store.render(article_id, user_id)
        cache = PUBLIC_CACHE if user_id is None else PRIVATE_CACHE
        return validated_response(request, body, "application/json", {"Cache-Control": cache})

    @app.get(
        "/v1/reactions",
        response_model=None,
        responses={200: {"model": BulkBody}, 304: {"description": "Not modified."}, **ERRORS},
    )
    async def get_tallies(
        request: Request,
        ids: Annotated[
            str, Query(description="Up to 100 article ids, comma-separated; duplicates ignored.")
        ],
        user_id: UserIdQuery = None,
    ) -> Response:
        """Tallies of up to 100 articles (a front page) in one Redis round trip."""
        article_ids = parse_bulk_ids(ids)
        check_user_id(user_id)
        with redis_unavailable_as_503():
            entries = await request.app.state.store.entries(article_ids, user_id)
        body = orjson.dumps({"articles": dict(zip(article_ids, entries, strict=True))})
        cache = PUBLIC_CACHE if user_id is None else PRIVATE_CACHE
        return validated_response(request, body, "application/json", {"Cache-Control": cache})

    @app.get(
        "/v1/articles/{article_id}/reactions/stream",
        response_model=None,
        responses={
            200: {
                "content": {"text/event-stream": {}},
                "description": "`event: tally` with the plain GET's JSON at connect and on "
                "every change (at most 4 a second); a comment every 15 s; the stream ends "
                "after a maximum lifetime and the browser reconnects.",
            },
            **ERRORS,
        },
    )
    async def stream_tally(article_id: ArticleIdPath, request: Request) -> Response:
        """Live tallies of one article over Server-Sent Events."""
        check_article_id(article_id)
        feed: ChangeFeed = request.app.state.feed
        store: TallyStore = request.app.state.store
        if feed.clients >= settings.sse_max_clients:
            raise ApiError(
                503,
                "too_many_streams",
                "This server is at its stream limit; retry shortly.",
                {"Retry-After": str(random.randint(2, 10))},
            )
        mailbox: Mailbox = feed.add(article_id)
        try:
            # Subscribe before the first read, so no change can fall between the two.
            await feed.wait_subscribed(2.0)
            with redis_unavailable_as_503():
                # Kept as str: orjson's bytes keep a 4 KiB buffer, per open stream.
                first = (await store.render(article_id)).decode()
        except BaseException:
            feed.remove(article_id, mailbox)
            raise
        # Jitter spreads the reconnections of clients that connected together.
        lifetime = settings.sse_max_lifetime_s * random.uniform(0.8, 1.0)

        async def events() -> AsyncIterator[ServerSentEvent]:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + lifetime
            keepalive = settings.sse_keepalive_s
            # `retry` spreads reconnections after a restart or a lifetime's end.
            yield ServerSentEvent(data=first, event="tally", retry=random.randint(1000, 4000))
            SSE_MESSAGES.inc()
            # The keep-alive comment is sent from here rather than by sse-starlette's ping
            # task: one task less per open stream saves about 6 KiB of its ~50.
            while True:
                try:
                    async with asyncio.timeout_at(min(deadline, loop.time() + keepalive)):
                        body = await mailbox.take()
                except TimeoutError:
                    if loop.time() >= deadline:
                        return
                    yield ServerSentEvent(comment="ping")
                    continue
                yield ServerSentEvent(data=body.decode(), event="tally")
                SSE_MESSAGES.inc()

        return TallyStream(
            events(),
            lambda: feed.remove(article_id, mailbox),
            ping=0,
            send_timeout=SSE_SEND_TIMEOUT_S,
            headers={"X-Accel-Buffering": "no", "Cache-Control": "no-store"},
        )

    @app.get(
        "/v1/trending",
        response_model=None,
        responses={200: {"model": TrendingBody}, **ERRORS},
    )
    async def get_trending(
        request: Request,
        reaction: Annotated[
            str, Query(description="A configured reaction type, or `all`.")
        ] = "all",
        window: Annotated[Literal["5m", "1h", "24h"], Query()] = "1h",
        limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 10,
    ) -> Response:
        """The articles with the most net reactions of a type within a window."""
        if reaction != "all" and reaction not in reactions:
            raise ApiError(
                422,
                "invalid_reaction",
                f"reaction must be 'all' or one of: {', '.join(reactions.ids)}.",
            )
        with redis_unavailable_as_503():
            top = await request.app.state.trending.top(reaction, window, limit)
        return ORJSONResponse(
            {
                "reaction": reaction,
                "window": window,
                "articles": [{"article_id": a, "count": c} for a, c in top],
            },
            headers={"Cache-Control": "public, max-age=5"},
        )

    @app.get("/v1/config", response_model=None, responses={200: {"model": ConfigBody}})
    async def get_config(request: Request) -> Response:
        """The configured reaction types in display order."""
        return validated_response(
            request, config_body, "application/json", {"Cache-Control": "public, max-age=60"}
        )

    @app.get(
        "/widget.js",
        response_model=None,
        responses={200: {"content": {"text/javascript": {}}, "description": "The widget."}},
    )
    async def get_widget(request: Request) -> Response:
        """The embeddable `<reaction-bar>` widget."""
        headers = {"Cache-Control": WIDGET_CACHE, "Vary": "Accept-Encoding", "ETag": widget_etag}
        if etag_matches(request.headers.get("if-none-match"), widget_etag):
            return Response(status_code=304, headers=headers)
        if "gzip" in request.headers.get("accept-encoding", ""):
            headers["Content-Encoding"] = "gzip"
            return Response(widget_gz, media_type="text/javascript; charset=utf-8", headers=headers)
        return Response(widget_js, media_type="text/javascript; charset=utf-8", headers=headers)

    @app.get(
        "/demo",
        response_model=None,
        responses={200: {"content": {"text/html": {}}, "description": "A demo article page."}},
    )
    async def get_demo(
        request: Request,
        article: Annotated[
            str, Query(description="Article id of the main story's bar (try your own).")
        ] = DEMO_ARTICLE,
    ) -> Response:
        """A demo article page with the widget under the story and on each 'more stories' item."""
        check_article_id(article)
        host = request.url.hostname or "127.0.0.1"
        host = f"[{host}]" if ":" in host else host
        ingest = settings.public_ingest_url or (
            f"{request.url.scheme}://{host}:{settings.ingest_port}"
        )
        page = demo_template.replace(
            "{{INGEST_URL}}", html.escape(ingest.rstrip("/"), quote=True)
        ).replace("{{ARTICLE}}", article)
        return Response(
            page, media_type="text/html; charset=utf-8", headers={"Cache-Control": "no-cache"}
        )

    return app
