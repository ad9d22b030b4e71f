"""The aggregator's ops endpoints (/healthz, /readyz, /metrics) on its own port."""

from __future__ import annotations

import asyncio

from fastapi import FastAPI, Request
from redis.asyncio import Redis
from redis.exceptions import RedisError

from services.aggregator.consumer import Aggregator
from shared.http import install_error_handlers, ops_router


def create_ops_app(aggregator: Aggregator, redis: Redis) -> FastAPI:
    """A small app that reports on the consumer loop running beside it."""
    app = FastAPI(title="Reactions aggregator", version="1", docs_url=None, redoc_url=None)
    install_error_handlers(app)

    async def ready(_: Request) -> dict[str, bool]:
        redis_ok = False
        try:
            async with asyncio.timeout(1.0):
                redis_ok = bool(await redis.ping())
        except (TimeoutError, RedisError, OSError):
            redis_ok = False
        consumer = aggregator.consumer
        kafka_ok = consumer is not None and bool(consumer.assignment() is not None)
        return {"redis": redis_ok, "kafka": kafka_ok}

    app.include_router(ops_router(ready))
    return app
