"""SSE fan-out: N clients on one viral article receiving reactions at a steady rate.

The clients live in bench/sse_clients.py (maintained with the reader). This scenario calls
its `measure()` when it exists:

    measure(reader_url, ingest_url, *, tokens, clients, rate, duration_s, reader_pid) -> dict
        with "delivered_per_s", "p99_ms" and "bytes_per_client" (any may be None)

and reports "not available" otherwise.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
from typing import Any

import aiohttp

from bench.context import Context
from bench.latency import detect_method
from bench.stats import Figure, Row, Target, unavailable

RATE = 1000


def hook() -> Any:
    """`bench.sse_clients.measure` when that module exists, else None."""
    try:
        module = importlib.import_module("bench.sse_clients")
    except ModuleNotFoundError:
        return None
    return getattr(module, "measure", None)


async def _has_stream(reader: str) -> bool:
    async with aiohttp.ClientSession() as session:
        return await detect_method(session, reader, "bench-viral") == "sse"


def run(ctx: Context) -> None:
    """Run the fan-out measurement per round if the reader streams and the hook is present."""
    clients = ctx.sizes.sse_clients
    metric = f"{clients:,} clients, {RATE:,} reactions/s"
    measure = hook()
    if measure is None:
        why = "bench/sse_clients.py (with measure()) is not in this build"
        ctx.add(
            unavailable(
                "sse", f"p99 delivery delay, {metric}", "ms", why, target=Target("<=", 500, "value")
            ),
            unavailable("sse", "updates delivered/s", "msg/s", why),
            unavailable("sse", "reader memory per client", "bytes", why),
        )
        return
    stack = ctx.stack
    ingest, aggregator, reader = stack.start_services(
        ("ingest", {}), ("aggregator", {}), ("reader", {})
    )
    try:
        if not asyncio.run(_has_stream(reader.url)):
            why = "the reader has no /v1/articles/{id}/reactions/stream"
            ctx.add(
                unavailable(
                    "sse",
                    f"p99 delivery delay, {metric}",
                    "ms",
                    why,
                    target=Target("<=", 500, "value"),
                ),
                unavailable("sse", "updates delivered/s", "msg/s", why),
                unavailable("sse", "reader memory per client", "bytes", why),
            )
            return
        runs: list[dict[str, Any]] = []
        for r in range(ctx.sizes.rounds):
            if r:
                # A fresh reader per round: its memory growth per client is only meaningful
                # from a process that has not held (and kept the arenas of) clients before.
                stack.stop_part(reader)
                reader = stack.start_service("reader")
            value = measure(
                reader.url,
                ingest.url,
                tokens=stack.tokens(int(RATE * ctx.sizes.sse_seconds)),
                clients=clients,
                rate=RATE,
                duration_s=ctx.sizes.sse_seconds,
                reader_pid=reader.process.pid(),
            )
            if inspect.isawaitable(value):
                value = asyncio.run(_await(value))
            runs.append(dict(value))
            ctx.say(f"sse round {r + 1}: {runs[-1]}")
    finally:
        for part in (reader, aggregator, ingest):
            stack.stop_part(part)

    def figure(key: str) -> Figure | None:
        values = [float(x[key]) for x in runs if x.get(key) is not None]
        return Figure.of(values) if values else None

    ctx.add(
        Row(
            "sse",
            f"p99 delivery delay, {metric}",
            "ms",
            figure("p99_ms"),
            target=Target("<=", 500, "value"),
        ),
        Row("sse", "updates delivered/s", "msg/s", figure("delivered_per_s")),
        Row("sse", "reader memory per client", "bytes", figure("bytes_per_client")),
    )


async def _await(value: Any) -> Any:
    return await value
