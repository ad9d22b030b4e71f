"""The ingest application: middleware, error handlers, the ops and write routers, and the
lifespan that owns the Kafka producer. The write path itself is in routes.py."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from prometheus_client import multiprocess
from starlette.types import ASGIApp

from services.ingest.config import IngestSettings
from services.ingest.deps import IngestState, get_state
from services.ingest.fast import FastVotes
from services.ingest.publisher import Publisher
from services.ingest.ratelimit import RateLimits
from services.ingest.routes import add_write_routes
from shared.allocator import pin_mmap_threshold
from shared.http import (
    TOKEN_CHECKS,
    TOO_MANY_PARAMETERS,
    ContractCors,
    QueryLimit,
    count_token_rejections_from_zero,
    declare_bearer_scheme,
    install_error_handlers,
    kafka_reachable,
    ops_router,
)
from shared.identity import Verifier
from shared.kafka import ensure_configured_topics
from shared.logs import configure_logging, get_logger
from shared.metrics import RequestMetrics

log = get_logger(__name__)


def create_app(settings: IngestSettings, verifier: Verifier | None = None) -> FastAPI:
    """The ingest application; clients live in its lifespan. `verifier` replaces the one the
    settings describe (the bench's baseline without token verification passes one)."""
    reactions = settings.reaction_set()
    issuer = settings.token_issuer_for_ingest()
    # Ingest verifies the tokens it signs even without a JWKS (development).
    if verifier is None:
        verifier = settings.verifier(settings.own_verification_keys(), TOKEN_CHECKS.inc)
    if issuer is None:
        log.warning(
            "identity_unconfigured",
            reason="REACTIONS_TOKEN_SIGNING_KEY_FILE is not set: POST /v1/readers answers 503",
        )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[IngestState]:
        # Also checked by `python -m services.ingest` before the workers start; checked
        # here too because the app may be served without it (uvicorn --factory, tests),
        # and no worker may publish to a topic partitioned otherwise than configured.
        await ensure_configured_topics(settings)
        limits = RateLimits(settings)
        publisher = Publisher(settings)
        await publisher.start()
        keys_held = asyncio.create_task(limits.report_keys_held())
        try:
            yield {
                "publisher": publisher,
                "limits": limits,
                "reactions": reactions,
                "clock_skew_ms": settings.client_clock_skew_ms,
                "verifier": verifier,
                "issuer": issuer,
            }
        finally:
            keys_held.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keys_held
            await publisher.stop()

    app = FastAPI(
        title="Reactions ingest",
        version="1",
        description="The write path: reader tokens, and a reader's reaction on an article "
        "set or cleared.",
        lifespan=lifespan,
        # /v1/votes/ is no other spelling of /v1/votes: a 404, not a redirect of a write.
        redirect_slashes=False,
        # Prometheus covers requests; FastAPI's OpenTelemetry hooks would only cost time.
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
        responses=TOO_MANY_PARAMETERS,
    )
    install_error_handlers(app)
    declare_bearer_scheme(app)
    app.add_middleware(QueryLimit)
    app.add_middleware(
        ContractCors,
        allow_origins=settings.origins,
        # POST is the API. PUT and DELETE only reach the replaced paths, so that a cached
        # old widget gets their 410 rather than a CORS failure.
        allow_methods=["POST", "PUT", "DELETE"],
        # Tokens travel in the Authorization header, never in cookies: no credentials.
        allow_headers=["Authorization", "Content-Type"],
        allow_credentials=False,
        max_age=600,
    )
    app.add_middleware(RequestMetrics)
    app.include_router(ops_router(_ready))
    add_write_routes(app, reactions)
    count_token_rejections_from_zero()
    return app


async def _ready(request: Request) -> dict[str, bool]:
    publisher = (await get_state(request))["publisher"]
    healthy = publisher.healthy() and await kafka_reachable(publisher.producer.client)
    return {"kafka": healthy}


def app_from_env(verifier: Verifier | None = None) -> ASGIApp:
    """Factory for uvicorn workers: settings from the environment, JSON logs, metrics cleanup;
    votes answered by the fast path (fast.py), everything else by the app."""
    settings = IngestSettings()
    configure_logging("ingest", settings.log_level)
    pin_mmap_threshold()  # the rate limits' tables: see shared/allocator.py
    logging.captureWarnings(True)  # library warnings as JSON lines too
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Live gauges of a worker that exits must not linger in the aggregated /metrics.
        atexit.register(multiprocess.mark_process_dead, os.getpid())
    return FastVotes(create_app(settings, verifier), settings.origins)
