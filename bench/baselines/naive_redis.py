"""The naive peer a user might write instead of this project: one FastAPI endpoint that
checks the reader's token with PyJWT and updates Redis directly per request (HGET the
reader, HINCRBY the counts, HSET the reader), with no Kafka, no durability guarantee and no
exactly-once."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import jwt
import orjson
from fastapi import FastAPI, Request
from fastapi.responses import ORJSONResponse, Response
from redis.asyncio import Redis

from bench.baselines.serve import serve
from shared.events import valid_article_id, valid_client_ts
from shared.jwks import load_jwks
from shared.reactions import DEFAULT_TYPES
from shared.tallies import counts_key, readers_key

REACTIONS = frozenset(DEFAULT_TYPES)


def create_app(redis_url: str, jwks: Path) -> FastAPI:
    """POST verifies the token and validates like ingest, then applies the vote to Redis."""
    keys = load_jwks(jwks, reader_token_keys=True)

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

    @app.post("/v1/votes", status_code=202)
    async def vote(request: Request) -> Response:
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        try:
            key = keys[jwt.get_unverified_header(token).get("kid")]
            claims = jwt.decode(
                token, key.key, algorithms=list(key.algorithms), audience="reactions"
            )
        except (jwt.PyJWTError, KeyError):
            return ORJSONResponse({"error": {"code": "invalid_token", "message": "Bad."}}, 401)
        user_id = str(claims["sub"])
        body = orjson.loads(await request.body())
        article_id = body.get("article_id") if isinstance(body, dict) else None
        reaction = body.get("reaction") if isinstance(body, dict) else None
        ok = (
            isinstance(article_id, str)
            and valid_article_id(article_id)
            and reaction in REACTIONS
            and (body.get("client_ts") is None or valid_client_ts(body["client_ts"]))
        )
        if not ok or not isinstance(reaction, str) or not isinstance(article_id, str):
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
    serve(create_app(os.environ["BENCH_REDIS_URL"], Path(os.environ["BENCH_JWKS"])), "naive_redis")
