"""The reader application: its lifespan opens every client, its routers answer the read path
(tallies, the bar as HTML, live tallies over SSE, trending, the widget)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import ORJSONResponse
from starlette.types import ASGIApp

from services.reader.assets import StaticAssets
from services.reader.config import ReaderSettings
from services.reader.deps import ReaderState, redis_ready
from services.reader.hot_reads import HotReads
from services.reader.live import ChangeFeed
from services.reader.routes import fragment, live, me, static, tallies, trending
from services.reader.sse import SSE_INTERVAL_S, StreamHandoff
from services.reader.store import TallyStore
from services.reader.trending import Trending
from services.reader.view import ViewState
from shared.http import (
    TOKEN_CHECKS,
    TOO_MANY_PARAMETERS,
    ContractCors,
    QueryLimit,
    count_token_rejections_from_zero,
    declare_bearer_scheme,
    install_error_handlers,
    ops_router,
)
from shared.identity import Verifier
from shared.logs import get_logger
from shared.metrics import RequestMetrics
from shared.reactions import ReactionSet
from shared.shutdown import close_within
from shared.tallies import READS, connect_redis

log = get_logger(__name__)


@asynccontextmanager
async def lifespan(
    settings: ReaderSettings,
    reactions: ReactionSet,
    assets: StaticAssets,
    verifier: Verifier,
    stopping: asyncio.Event | None = None,
) -> AsyncIterator[ReaderState]:
    """Redis, the tally store, the live feed and trending for the app's life; open streams
    end properly once `stopping` is set."""
    redis = connect_redis(settings.redis_url, READS, cluster=settings.redis_cluster)
    view = ViewState(redis, settings.topic)
    store = TallyStore(
        redis, reactions, settings.reader_cache_ttl_ms / 1000, settings.reader_cache_entries, view
    )
    feed = ChangeFeed(redis, store.cache, store.render, interval=SSE_INTERVAL_S)
    view.on_rebuilt(feed.refresh)
    ender = asyncio.create_task(_end_streams_on(stopping, feed)) if stopping else None
    try:
        yield ReaderState(
            settings=settings,
            reactions=reactions,
            assets=assets,
            redis=redis,
            store=store,
            feed=feed,
            trending=Trending(redis, ttl=settings.trending_cache_ms / 1000),
            verifier=verifier,
        )
    finally:
        if ender is not None:
            ender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ender
        await feed.close()
        await view.close()
        await close_within("redis", redis.aclose())


async def _end_streams_on(stopping: asyncio.Event, feed: ChangeFeed) -> None:
    # The server waits for open responses before it stops: end the streams, which would
    # otherwise run out the graceful-shutdown time and then be cancelled mid-stream.
    await stopping.wait()
    feed.end_streams()


def create_app(settings: ReaderSettings, stopping: asyncio.Event | None = None) -> FastAPI:
    """The reader application: middleware, error handlers, the ops and feature routers."""
    # Read and rendered before serving: a bad reaction config or a missing file stops here.
    reactions = settings.reaction_set()
    assets = StaticAssets.load(reactions)
    # Public keys only: the reader never holds the key that signs reader tokens.
    verifier = settings.verifier(on_check=TOKEN_CHECKS.inc)
    if settings.token_public_keys_file is None:
        log.warning(
            "identity_unconfigured",
            reason="REACTIONS_TOKEN_PUBLIC_KEYS_FILE is not set: own-vote reads answer 401",
        )
    app = FastAPI(
        title="Reactions reader",
        version="1",
        description="Public tallies, live tallies (SSE), trending and the embeddable widget; "
        "a reader's own reactions with a reader token.",
        lifespan=lambda _: lifespan(settings, reactions, assets, verifier, stopping),
        default_response_class=ORJSONResponse,
        responses=TOO_MANY_PARAMETERS,
    )
    install_error_handlers(app)
    declare_bearer_scheme(app)
    app.add_middleware(QueryLimit)
    app.add_middleware(
        ContractCors,
        allow_origins=settings.origins,
        allow_methods=["GET"],
        # The own-votes read carries a reader token; no cookies, so no credentials.
        allow_headers=["Authorization"],
        allow_credentials=False,
        expose_headers=["ETag"],
        max_age=600,
    )
    app.add_middleware(RequestMetrics)
    app.include_router(ops_router(redis_ready))
    for routes in (tallies, me, live, static):
        app.include_router(routes.router)
    app.include_router(fragment.router_for(reactions))
    app.include_router(trending.router_for(reactions))
    count_token_rejections_from_zero()
    return app


def served_app(settings: ReaderSettings, stopping: asyncio.Event | None = None) -> ASGIApp:
    """The app as the server runs it: plain count reads answered by HotReads without the
    framework, and inside StreamHandoff, so an open stream keeps none of the framework's
    per-request state alive."""
    return HotReads(StreamHandoff(create_app(settings, stopping)), settings.origins)
