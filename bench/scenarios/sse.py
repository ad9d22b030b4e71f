"""SSE fan-out: N page streams on one viral article that changes 1,000 times a second, on
the reader and on a minimal broadcaster (bench/baselines/sse_broadcast.py) measured back
to back in each round with the same client processes and the same changes.

Changes are written to Redis and announced on rx:changed exactly as the aggregator does,
so Kafka, ingest and the aggregator do not compete for the cores; the clients run in their
own processes (bench/sse_harness.py) and their CPU time is reported.
"""

from __future__ import annotations

from typing import Any

from bench.context import Context
from bench.sse_clients import UNCAPPED, measure_pair
from bench.stack import mark_view
from bench.stats import Figure, Row, Target, paired_ratios
from deploy.local.services import Service

RATE = 1000


def run(ctx: Context) -> None:
    """Reader and baseline, round by round, each started fresh for its measurement."""
    stack = ctx.stack
    clients = ctx.sizes.sse_clients
    metric = f"{clients:,} clients, {RATE:,} changes/s on one article"

    def reader() -> Service:
        mark_view(stack.redis_url(), stack.topic)
        return stack.start_service("reader", **UNCAPPED)

    def broadcaster() -> Service:
        return stack.start_app("sse_broadcast", {"BENCH_REDIS_URL": stack.redis_url()})

    rounds: list[dict[str, dict[str, Any]]] = []
    for r in range(ctx.sizes.rounds):
        pair = measure_pair(
            reader,
            broadcaster,
            stack.stop_part,
            stack.redis_url(),
            clients=clients,
            rate=RATE,
            duration_s=ctx.sizes.sse_seconds,
        )
        rounds.append(pair)
        ctx.say(f"sse round {r + 1}: {pair}")

    def values(server: str, key: str) -> list[float]:
        return [float(x[server][key]) for x in rounds if x[server].get(key) is not None]

    def figure(server: str, key: str) -> Figure | None:
        found = values(server, key)
        return Figure.of(found) if found else None

    delivered, base = values("reader", "delivered_per_s"), values("baseline", "delivered_per_s")
    harness = [
        x[s]["harness_cpu_s"] / ctx.sizes.sse_seconds
        for x in rounds
        for s in ("reader", "baseline")
    ]
    note = f"client processes used {max(harness):.2f} CPU-s per s at most" if harness else ""
    ctx.add(
        Row(
            "sse",
            f"p99 change → client, {metric}",
            "ms",
            figure("reader", "p99_ms"),
            "minimal broadcaster",
            figure("baseline", "p99_ms"),
            target=Target("<=", 500, "value"),
            note=note,
        ),
        Row(
            "sse",
            "tallies delivered/s",
            "msg/s",
            Figure.of(delivered) if delivered else None,
            "minimal broadcaster",
            Figure.of(base) if base else None,
            paired_ratios(delivered, base),
            Target(">=", 0.7),
            "at most 4 a second per stream",
        ),
        Row("sse", "reader memory per stream", "bytes", figure("reader", "bytes_per_client")),
        Row(
            "sse", "reader CPU share during the run", "cores", figure("reader", "server_cpu_share")
        ),
    )
