"""The ingest application: middleware, error handlers, the ops and write routers, and the
lifespan that owns the Kafka producer. The write path itself is in routes.py."""

from __future__ import annotations

import atexit
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from prometheus_client import multiprocess

from services.ingest.config import IngestSettings
from services.ingest.deps import IngestState, get_state
from services.ingest.publisher import Publisher
from services.ingest.ratelimit import RateLimits
from services.ingest.routes import add_write_routes
from shared.http import ContractCors, install_error_handlers, kafka_reachable, ops_router
from shared.kafka import ensure_topics
from shared.logs import configure_logging
from shared.metrics import RequestMetrics


def create_app(settings: IngestSettings) -> FastAPI:
    """The ingest application; clients live in its lifespan."""
    reactions = settings.reaction_set()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[IngestState]:
        # Also checked by `python -m services.ingest` before the workers start; checked
        # here too because the app may be served without it (uvicorn --factory, tests),
        # and no worker may publish to a topic partitioned otherwise than configured.
        await ensure_topics(
            settings.kafka_bootstrap, settings.topic_spec(), dlq_topic=settings.dlq_topic
        )
        limits = RateLimits(settings)
        publisher = Publisher(settings)
        await publisher.start()
        try:
            yield {"publisher": publisher, "limits": limits, "reactions": reactions}
        finally:
            await publisher.stop()

    app = FastAPI(
        title="Reactions ingest",
        version="1",
        description="The write path: set or clear a reader's reaction on an article.",
        lifespan=lifespan,
        # Prometheus covers requests; FastAPI's OpenTelemetry hooks would only cost time.
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
    )
    install_error_handlers(app)
    app.add_middleware(
        ContractCors,
        allow_origins=settings.origins,
        allow_methods=["PUT", "DELETE"],
        allow_headers=["Content-Type"],
        allow_credentials=False,
        max_age=600,
    )
    app.add_middleware(RequestMetrics)
    app.include_router(ops_router(_ready))
    add_write_routes(app, reactions)
    return app


async def _ready(request: Request) -> dict[str, bool]:
    publisher = (await get_state(request))["publisher"]
    healthy = publisher.healthy() and await kafka_reachable(publisher.producer.client)
    return {"kafka": healthy}


def app_from_env() -> FastAPI:
    """Factory for uvicorn workers: settings from the environment, JSON logs, metrics cleanup."""
    settings = IngestSettings()
    configure_logging("ingest", settings.log_level)
    logging.captureWarnings(True)  # library warnings as JSON lines too
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Live gauges of a worker that exits must not linger in the aggregated /metrics.
        atexit.register(multiprocess.mark_process_dead, os.getpid())
    return create_app(settings)
