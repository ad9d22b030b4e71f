"""Prometheus plumbing shared by the services: exposition and per-request metrics."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Final

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

HTTP_REQUESTS: Final = Counter(
    "reactions_http_requests_total",
    "HTTP requests answered, by route template, method and status.",
    ["route", "method", "status"],
)
HTTP_LATENCY: Final = Histogram(
    "reactions_http_request_duration_seconds",
    "Time from request start to response start, by route template.",
    ["route"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)


def render_metrics() -> tuple[bytes, str]:
    """The exposition text; aggregated over workers in prometheus-client multiprocess mode."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


class RequestMetrics:
    """ASGI middleware counting requests by route template (not raw path: bounded labels)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                HTTP_LATENCY.labels(route_template(scope)).observe(time.perf_counter() - start)
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            HTTP_REQUESTS.labels(route_template(scope), scope["method"], str(status)).inc()


def route_template(scope: Scope) -> str:
    """The matched route's path template, or 'unmatched'.

    The router leaves the route it matched in the scope, so nothing is matched twice; a
    request answered before routing (a CORS preflight) is matched here.
    """
    route = scope.get("route")
    if route is not None:
        return str(getattr(route, "path", "unmatched"))
    for candidate in _routes(scope.get("app")):
        match, _ = candidate.matches(scope)
        if match == Match.FULL:
            return str(getattr(candidate, "path", "unmatched"))
    return "unmatched"


def _routes(app: object) -> list[BaseRoute]:
    """The app's routes, those of included routers in place of the routers."""
    router = getattr(app, "router", None)
    if router is None:
        return []
    cached: list[BaseRoute] | None = getattr(router, "_reactions_flat_routes", None)
    if cached is None:
        cached = list(_flatten(router.routes))
        router._reactions_flat_routes = cached
    return cached


def _flatten(routes: list[BaseRoute]) -> Iterator[BaseRoute]:
    for route in routes:
        # FastAPI keeps an included APIRouter as one entry wrapping the original router.
        included = getattr(route, "original_router", None)
        if included is not None:
            yield from _flatten(included.routes)
        else:
            yield route
