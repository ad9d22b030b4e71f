"""The read path: tallies, the reader's own choice, and the reaction configuration."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import ORJSONResponse, Response
from redis.asyncio import Redis
from redis.exceptions import RedisError

from services.reader.config import ReaderSettings
from shared.events import valid_article_id, valid_user_id
from shared.http import ApiError, install_error_handlers, ops_router
from shared.metrics import RequestMetrics
from shared.reactions import ReactionSet
from shared.tallies import connect_redis, read_mine, read_tally


def create_app(settings: ReaderSettings) -> FastAPI:
    """The reader application; the Redis client lives in its lifespan."""
    reactions: ReactionSet = settings.reaction_set()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        redis = connect_redis(settings.redis_url, cluster=settings.redis_cluster)
        app.state.redis = redis
        try:
            yield
        finally:
            await redis.aclose()

    app = FastAPI(
        title="Reactions reader",
        version="1",
        lifespan=lifespan,
        default_response_class=ORJSONResponse,
    )
    install_error_handlers(app)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=[o.strip() for o in settings.allowed_origins.split(",") if o.strip()],
        allow_methods=["GET"],
        allow_credentials=False,
        max_age=600,
    )
    app.add_middleware(RequestMetrics)

    async def ready(request: Request) -> dict[str, bool]:
        try:
            async with asyncio.timeout(1.0):
                return {"redis": bool(await request.app.state.redis.ping())}
        except (TimeoutError, RedisError, OSError):
            return {"redis": False}

    app.include_router(ops_router(ready))

    @app.get("/v1/articles/{article_id}/reactions")
    async def get_tally(article_id: str, request: Request, user_id: str | None = None) -> Response:
        """The zero-filled tally of one article, and the reader's own choice with user_id."""
        if not valid_article_id(article_id):
            raise ApiError(
                422,
                "invalid_article_id",
                "article_id must be 1-128 characters of A-Z a-z 0-9 . _ : ~ -.",
            )
        if user_id is not None and not valid_user_id(user_id):
            raise ApiError(
                422, "invalid_user_id", "user_id must be 1-64 characters of A-Z a-z 0-9 . _ ~ -."
            )
        redis: Redis = request.app.state.redis
        counts = await read_tally(redis, article_id, reactions.ids)
        body: dict[str, object] = {
            "article_id": article_id,
            "counts": counts,
            "total": sum(counts.values()),
        }
        if user_id is not None:
            body["mine"] = await read_mine(redis, article_id, user_id)
        return ORJSONResponse(body)

    @app.get("/v1/config")
    async def get_config() -> Response:
        """The configured reaction types in display order."""
        return ORJSONResponse({"reactions": [t.model_dump() for t in reactions.types]})

    return app
