"""The naive peer a user might write instead of this project: one FastAPI endpoint that
updates Redis directly per request (HGET the reader, HINCRBY the counts, HSET the reader),
with no Kafka, no durability guarantee and no exactly-once."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import ORJSONResponse, Response
from redis.asyncio import Redis

from bench.baselines.serve import serve
from shared.events import valid_article_id, valid_client_ts, valid_user_id
from shared.reactions import DEFAULT_TYPES
from shared.tallies import counts_key, readers_key

REACTIONS = frozenset(DEFAULT_TYPES)


def create_app(redis_url: str) -> FastAPI:
    """PUT validates like ingest and applies the vote to Redis before answering."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.redis = Redis.from_url(redis_url, decode_responses=True)
        try:
            yield
        finally:
            await app.state.redis.aclose()

    app = FastAPI(default_response_class=ORJSONResponse, lifespan=lifespan)

    @app.get("/readyz")
    async def ready(request: Request) -> dict[str, bool]:
        return {"redis": bool(await request.app.state.redis.ping())}

    @app.put("/v1/articles/{article_id}/reactions/{user_id}", status_code=202)
    async def set_reaction(article_id: str, user_id: str, request: Request) -> Response:
        body = orjson.loads(await request.body())
        reaction = body.get("reaction") if isinstance(body, dict) else None
        ok = (
            valid_article_id(article_id)
            and valid_user_id(user_id)
            and reaction in REACTIONS
            and (body.get("client_ts") is None or valid_client_ts(body["client_ts"]))
        )
        if not ok or not isinstance(reaction, str):
            return ORJSONResponse({"error": {"code": "invalid", "message": "Bad."}}, 422)
        redis: Redis = request.app.state.redis
        counts, readers = counts_key(article_id), readers_key(article_id)
        current = await redis.hget(readers, user_id)
        if current != reaction:
            pipe = redis.pipeline(transaction=False)
            if current:
                pipe.hincrby(counts, current, -1)
            pipe.hincrby(counts, reaction, 1)
            pipe.hset(readers, user_id, reaction)
            await pipe.execute()
        return ORJSONResponse({"accepted": True}, 202)

    return app


if __name__ == "__main__":
    serve(create_app(os.environ["BENCH_REDIS_URL"]), "naive_redis")
