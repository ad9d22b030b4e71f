"""SSE at scale: N streams on one process, their memory, and fan-out under a viral story.

    .venv/bin/python -m bench.sse_clients --clients 5000 [--articles-per-stream 1]
    .venv/bin/python -m bench.sse_clients --clients 10000 --rate 1000 --duration 15

Starts its own redis-server, the reader and (with --rate) the minimal broadcaster of
bench/baselines/sse_broadcast.py on free ports. The streams live in separate client
processes (bench/sse_harness.py) that count bytes on every stream and parse a sample. It
reports the reader's resident memory per open stream; with --rate, each server in turn
gets the same clients and the same changes — written to Redis and announced on
rx:changed exactly as the aggregator does, `rate` a second on one viral article (Kafka,
ingest and the aggregator stay off the two cores) — and the delivered tallies a second,
the p99 delay from a change to a sampled client seeing it, and the client processes' CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from bench.pinning import cpu_seconds
from bench.sse_harness import ClientFleet, Seen
from bench.stack import mark_view
from deploy.local.process import free_port
from deploy.local.redis import RedisServer
from deploy.local.services import Service, service_env
from shared.tallies import CHANGES_CHANNEL, counts_key

# The caps protect a reader from one address; the bench is one address.
UNCAPPED = {
    "REACTIONS_SSE_MAX_CLIENTS": "1000000",
    "REACTIONS_SSE_MAX_STREAMS_PER_CLIENT": "1000000",
    "REACTIONS_LOG_LEVEL": "WARNING",
}


def rss_bytes(pid: int) -> int:
    """Resident set size of a process, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def stream_paths(clients: int, per_stream: int, pool: int = 1000) -> list[str]:
    """Page streams of `per_stream` articles each, spread over a pool of articles."""
    if per_stream == 1:
        return [f"/v1/stream?ids=bench-{i % pool}" for i in range(clients)]
    return [
        "/v1/stream?ids=" + ",".join(f"bench-{(i + j) % pool}" for j in range(per_stream))
        for i in range(clients)
    ]


def hold(url: str, pid: int, paths: list[str], processes: int) -> dict[str, float]:
    """Open every stream, then the server's RSS growth per stream."""
    host, port = url.removeprefix("http://").split(":")
    baseline = rss_bytes(pid)
    fleet = ClientFleet(host, int(port), paths, processes)
    started = time.monotonic()
    connected = fleet.wait_connected()
    connect_s = time.monotonic() - started
    time.sleep(2)  # let allocations settle before reading RSS
    held = rss_bytes(pid)
    seen = fleet.collect()
    return {
        "connected": connected,
        "connect_s": connect_s,
        "rss_before_mib": baseline / 2**20,
        "rss_held_mib": held / 2**20,
        "bytes_per_client": (held - baseline) / max(connected, 1),
        "failed": seen.failed,
    }


async def drive_changes(
    redis_url: str, article: str, rate: int, duration_s: float
) -> tuple[list[float], float]:
    """`rate` changes a second on `article`, open loop: each adds one vote and is announced
    on rx:changed as the aggregator announces a batch; when each was announced."""
    redis = Redis.from_url(redis_url)
    announced: list[float] = []
    message = b'["' + article.encode() + b'"]'
    started = time.monotonic()
    try:
        for k in range(int(rate * duration_s)):
            delay = started + k / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            pipe = redis.pipeline(transaction=False)
            pipe.hincrby(counts_key(article), "love", 1)
            pipe.publish(CHANGES_CHANNEL, message)
            await pipe.execute()
            announced.append(time.monotonic())
    finally:
        await redis.aclose()
    return announced, time.monotonic() - started


def delays(
    samples: list[list[tuple[float, int]]], announced: list[float], base: int
) -> list[float]:
    """Per sampled stream and change k: when it first saw a total ≥ base + k, minus when k
    was announced (seconds)."""
    out: list[float] = []
    for seen in samples:
        j = 0
        for k, at in enumerate(announced, start=1):
            while j < len(seen) and seen[j][1] < base + k:
                j += 1
            if j == len(seen):
                break
            out.append(max(seen[j][0] - at, 0.0))
    return out


def viral(
    url: str,
    pid: int,
    redis_url: str,
    *,
    clients: int,
    rate: int,
    duration_s: float,
    processes: int = 2,
) -> dict[str, float | None]:
    """`clients` streams on one fresh viral article while it changes `rate` times a second."""
    host, port = url.removeprefix("http://").split(":")
    article = f"viral-{time.time_ns()}"
    baseline = rss_bytes(pid)
    fleet = ClientFleet(host, int(port), [f"/v1/stream?ids={article}"] * clients, processes)
    connected = fleet.wait_connected()
    held = rss_bytes(pid)
    cpu_before = cpu_seconds(pid)
    announced, elapsed = asyncio.run(drive_changes(redis_url, article, rate, duration_s))
    server_cpu = cpu_seconds(pid) - cpu_before
    time.sleep(1.0)  # the last window's send
    seen: Seen = fleet.collect()
    lags = sorted(delays(seen.samples, announced, 0))
    return {
        "connected": connected,
        "delivered_per_s": (seen.events - seen.connected) / elapsed,
        "p99_ms": lags[int(len(lags) * 0.99) - 1] * 1000 if lags else None,
        "p50_ms": lags[len(lags) // 2] * 1000 if lags else None,
        "bytes_per_client": (held - baseline) / max(connected, 1),
        "server_cpu_share": server_cpu / elapsed,
        "harness_cpu_s": seen.cpu_s,
        "changes_per_s": len(announced) / elapsed,
    }


def measure_pair(
    start_reader: Callable[[], Service],
    start_baseline: Callable[[], Service],
    stop: Callable[[Service], None],
    redis_url: str,
    **kw: Any,
) -> dict[str, dict[str, float | None]]:
    """The reader, then the baseline, each fresh, with the same clients and changes."""
    out = {}
    for name, start in (("reader", start_reader), ("baseline", start_baseline)):
        server = start()
        try:
            pid = server.process.pid()
            assert pid is not None
            out[name] = viral(server.url, pid, redis_url, **kw)
        finally:
            stop(server)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=5000)
    parser.add_argument("--articles-per-stream", type=int, default=1)
    parser.add_argument("--processes", type=int, default=2, help="client processes")
    parser.add_argument("--rate", type=int, default=0, help="changes/s on one viral article")
    parser.add_argument("--duration", type=float, default=15.0)
    args = parser.parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < args.clients // args.processes + 100:
        sys.stderr.write(f"the open-files hard limit ({hard}) is too low for --clients\n")
        return 1
    out = sys.stdout.write
    with tempfile.TemporaryDirectory(prefix="sse-bench-") as tmp:
        redis = RedisServer(Path(tmp) / "redis", free_port())
        redis.start()
        mark_view(redis.url)
        env = service_env(redis_url=redis.url, overrides=UNCAPPED)

        def reader() -> Service:
            service = Service("reader", free_port(), env, Path(tmp) / "logs")
            service.start()
            return service

        def broadcaster() -> Service:
            module = "bench.baselines.sse_broadcast"
            port = free_port()
            app_env = {"BENCH_PORT": str(port), "BENCH_REDIS_URL": redis.url}
            service = Service("broadcast", port, app_env, Path(tmp) / "logs", module=module)
            service.start()
            return service

        try:
            server = reader()
            pid = server.process.pid()
            assert pid is not None
            paths = stream_paths(args.clients, args.articles_per_stream)
            held = hold(server.url, pid, paths, args.processes)
            server.stop()
            out(
                f"streams held           {held['connected']:.0f} of {args.clients} "
                f"({args.articles_per_stream} article(s) each) in {held['connect_s']:.1f} s\n"
                f"reader RSS             {held['rss_before_mib']:.1f} MiB -> "
                f"{held['rss_held_mib']:.1f} MiB\n"
                f"memory per stream      {held['bytes_per_client'] / 1024:.1f} KiB\n"
            )
            if args.rate:
                pair = measure_pair(
                    reader,
                    broadcaster,
                    lambda s: s.stop(),
                    redis.url,
                    clients=args.clients,
                    rate=args.rate,
                    duration_s=args.duration,
                    processes=args.processes,
                )
                for name, figures in pair.items():
                    shown = ", ".join(
                        f"{k} {v:,.1f}" if isinstance(v, float) else f"{k} {v}"
                        for k, v in figures.items()
                    )
                    out(f"{name:<9} {shown}\n")
        finally:
            with contextlib.suppress(Exception):
                redis.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
