"""The aggregator's ops endpoints (/healthz, /readyz, /metrics) on its own port."""

from __future__ import annotations

from fastapi import FastAPI, Request
from redis.asyncio import Redis

from services.aggregator.consumer import Aggregator
from shared.http import install_error_handlers, kafka_reachable, ops_router, redis_reachable
from shared.metrics import RequestMetrics


def create_ops_app(aggregator: Aggregator, redis: Redis) -> FastAPI:
    """A small app that reports on the consumer loop running beside it."""
    app = FastAPI(title="Reactions aggregator", version="1", docs_url=None, redoc_url=None)
    install_error_handlers(app)
    app.add_middleware(RequestMetrics)

    async def ready(_: Request) -> dict[str, bool]:
        consumer = aggregator.consumer
        return {
            "redis": await redis_reachable(redis),
            "kafka": consumer is not None and await kafka_reachable(consumer._client),
        }

    app.include_router(ops_router(ready))
    return app
