"""The aggregator's ops endpoints (/healthz, /readyz, /metrics) on its own port."""

from __future__ import annotations

import asyncio

from aiokafka.errors import KafkaError
from fastapi import FastAPI, Request
from redis.asyncio import Redis
from redis.exceptions import RedisError

from services.aggregator.consumer import Aggregator
from shared.http import install_error_handlers, ops_router
from shared.metrics import RequestMetrics


def create_ops_app(aggregator: Aggregator, redis: Redis) -> FastAPI:
    """A small app that reports on the consumer loop running beside it."""
    app = FastAPI(title="Reactions aggregator", version="1", docs_url=None, redoc_url=None)
    install_error_handlers(app)
    app.add_middleware(RequestMetrics)

    async def ready(_: Request) -> dict[str, bool]:
        redis_ok = kafka_ok = False
        try:
            async with asyncio.timeout(1.0):
                redis_ok = bool(await redis.ping())
        except (TimeoutError, RedisError, OSError):
            redis_ok = False
        consumer = aggregator.consumer
        if consumer is not None:
            try:
                async with asyncio.timeout(1.0):
                    await consumer._client.fetch_all_metadata()
                kafka_ok = True
            except (TimeoutError, KafkaError, OSError):
                kafka_ok = False
        return {"redis": redis_ok, "kafka": kafka_ok}

    app.include_router(ops_router(ready))
    return app
