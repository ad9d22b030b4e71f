"""Hold N concurrent SSE clients on one reader process; report memory per client and fan-out.

    .venv/bin/python bench/sse_clients.py --clients 5000

Starts its own redis-server and reader on free ports (or uses `--reader URL --pid PID`
for a running one), opens N raw-socket SSE streams spread over `--articles` articles,
waits for each stream's first tally, and reports the reader's RSS growth per client, the
open-streams gauge, and how long one change takes to reach every client of the busiest
article. Clients are plain asyncio sockets, not httpx, so the client side stays light.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import resource
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from redis.asyncio import Redis

from deploy.local.client import VoteApi
from deploy.local.process import free_port
from deploy.local.redis import RedisServer
from deploy.local.services import Service, service_env
from shared.tallies import CHANGES_CHANNEL, counts_key


def rss_bytes(pid: int) -> int:
    """Resident set size of a process, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def metric(reader: str, name: str) -> float:
    with urllib.request.urlopen(f"{reader}/metrics", timeout=10) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    return 0.0


@dataclass
class Client:
    """One SSE stream on a raw socket; records when each tally arrives (and, when `keep`,
    the total it carried)."""

    article: str
    tallies: list[float] = field(default_factory=list)
    first: asyncio.Event = field(default_factory=asyncio.Event)
    updated: asyncio.Event = field(default_factory=asyncio.Event)
    keep: bool = False
    totals: list[tuple[float, int]] = field(default_factory=list)

    async def run(self, host: str, port: int) -> None:
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(
            f"GET /v1/articles/{self.article}/reactions/stream HTTP/1.1\r\n"
            f"Host: {host}:{port}\r\nAccept: text/event-stream\r\n\r\n".encode()
        )
        await writer.drain()
        try:
            while line := await reader.readline():
                if line.startswith(b"event: tally"):
                    self.tallies.append(time.perf_counter())
                    if len(self.tallies) == 1:
                        self.first.set()
                    else:
                        self.updated.set()
                elif self.keep and line.startswith(b"data: "):
                    total = orjson.loads(line[6:])["total"]
                    self.totals.append((self.tallies[-1], total))
                    self.updated.set()
        finally:
            writer.close()


async def bench(args: argparse.Namespace, reader_url: str, pid: int, redis_url: str) -> None:
    out = sys.stdout.write
    host, port = reader_url.removeprefix("http://").split(":")
    redis = Redis.from_url(redis_url)
    baseline = rss_bytes(pid)
    clients = [Client(f"bench-{i % args.articles}") for i in range(args.clients)]
    connecting = asyncio.Semaphore(args.connect_concurrency)

    async def connect(client: Client) -> None:
        async with connecting:
            task = asyncio.create_task(client.run(host, int(port)))
            tasks.append(task)
            await asyncio.wait_for(client.first.wait(), 120)

    tasks: list[asyncio.Task[None]] = []
    started = time.perf_counter()
    await asyncio.gather(*(connect(c) for c in clients))
    connect_s = time.perf_counter() - started
    await asyncio.sleep(2)  # let allocations settle before reading RSS
    held = rss_bytes(pid)
    gauge = metric(reader_url, "reactions_reader_sse_clients")
    out(
        f"clients connected      {args.clients} over {args.articles} articles "
        f"in {connect_s:.1f} s\n"
    )
    out(f"open-streams gauge     {gauge:.0f}\n")
    out(f"reader RSS             {baseline / 2**20:.1f} MiB -> {held / 2**20:.1f} MiB\n")
    out(f"memory per client      {(held - baseline) / args.clients / 1024:.1f} KiB\n")

    # One change on the busiest article: time until every one of its clients has it.
    busiest = [c for c in clients if c.article == "bench-0"]
    await redis.hincrby(counts_key("bench-0"), "love", 1)
    sent = time.perf_counter()
    await redis.publish(CHANGES_CHANNEL, b'["bench-0"]')
    await asyncio.wait_for(asyncio.gather(*(c.updated.wait() for c in busiest)), 120)
    last = max(c.tallies[1] for c in busiest) - sent
    out(
        f"fan-out of one change  {len(busiest)} clients, last received after {last * 1000:.0f} ms\n"
    )
    alive = sum(not t.done() for t in tasks)
    out(f"streams still open     {alive}\n")
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await redis.aclose()


def measure(
    reader_url: str,
    ingest_url: str,
    *,
    tokens: Sequence[str],
    clients: int,
    rate: int,
    duration_s: float,
    reader_pid: int | None,
    sampled: int = 200,
) -> dict[str, float | None]:
    """`clients` streams on one viral article while `rate` new readers a second react to it.

    Every reaction comes from a new reader (one of `tokens`, at least `rate * duration_s`),
    so the k-th accepted one makes the total k: a
    sampled client's delay for reaction k is when it first saw a total of at least k, minus
    when ingest answered 202 for it. Returns delivered updates per second (all clients), the
    p99 of those delays in ms, and the reader's RSS growth per client.
    """
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return asyncio.run(
        _measure(reader_url, ingest_url, tokens, clients, rate, duration_s, reader_pid, sampled)
    )


async def _measure(
    reader_url: str,
    ingest_url: str,
    tokens: Sequence[str],
    clients: int,
    rate: int,
    duration_s: float,
    reader_pid: int | None,
    sampled: int,
) -> dict[str, float | None]:
    host, port = reader_url.removeprefix("http://").split(":")
    article = f"viral-{time.time_ns()}"
    streams = [Client(article, keep=i < sampled) for i in range(clients)]
    baseline = rss_bytes(reader_pid) if reader_pid else None
    connecting = asyncio.Semaphore(200)
    tasks: list[asyncio.Task[None]] = []

    async def connect(client: Client) -> None:
        async with connecting:
            tasks.append(asyncio.create_task(client.run(host, int(port))))
            await asyncio.wait_for(client.first.wait(), 120)

    try:
        await asyncio.gather(*(connect(c) for c in streams))
        held = rss_bytes(reader_pid) if reader_pid else None
        before = sum(len(c.tallies) for c in streams)
        acked, elapsed = await _react_open_loop(ingest_url, tokens, article, rate, duration_s)
        # Give the sampled clients up to 30 s to see the last reaction; late ones count as such.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(30):
                for client in streams[:sampled]:
                    while (client.totals[-1][1] if client.totals else 0) < len(acked):
                        client.updated.clear()
                        await client.updated.wait()
        delivered = sum(len(c.tallies) for c in streams) - before
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    delays = _delays(streams[:sampled], sorted(acked))
    delays.sort()
    p99 = delays[int(len(delays) * 0.99) - 1] * 1000 if delays else None
    return {
        "delivered_per_s": delivered / elapsed if elapsed else None,
        "p99_ms": p99,
        "bytes_per_client": (held - baseline) / clients
        if held is not None and baseline is not None
        else None,
    }


async def _react_open_loop(
    ingest_url: str, tokens: Sequence[str], article: str, rate: int, duration_s: float
) -> tuple[list[float], float]:
    """`rate` new readers a second react to `article`; when each 202 came, and for how long."""
    import aiohttp

    acked: list[float] = []
    api = VoteApi(ingest_url)
    if len(tokens) < int(rate * duration_s):
        raise ValueError(f"{int(rate * duration_s)} reactions need as many readers' tokens")
    async with aiohttp.ClientSession() as http:

        async def react(i: int) -> None:
            vote = api.vote(tokens[i], article, "love")
            async with http.request(
                vote.method, vote.url, data=vote.body, headers=dict(vote.headers)
            ) as response:
                if response.status == 202:
                    acked.append(time.perf_counter())

        started = time.perf_counter()
        sends = []
        for i in range(int(rate * duration_s)):
            # Open loop: each request leaves at its scheduled time, answered or not.
            delay = started + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            sends.append(asyncio.create_task(react(i)))
        await asyncio.gather(*sends, return_exceptions=True)
    return acked, time.perf_counter() - started


def _delays(sampled: list[Client], acked: list[float]) -> list[float]:
    """Per sampled client and reaction k: when it first saw a total ≥ k, minus k's 202."""
    delays: list[float] = []
    for client in sampled:
        seen = client.totals
        j = 0
        for k, ack in enumerate(acked, start=1):
            while j < len(seen) and seen[j][1] < k:
                j += 1
            if j == len(seen):
                break
            delays.append(max(seen[j][0] - ack, 0.0))
    return delays


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=5000)
    parser.add_argument("--articles", type=int, default=10)
    parser.add_argument("--connect-concurrency", type=int, default=200)
    parser.add_argument("--reader", help="URL of a running reader (with --pid and --redis)")
    parser.add_argument("--pid", type=int, help="pid of that reader, for its RSS")
    parser.add_argument("--redis", help="its Redis URL, to publish a change")
    args = parser.parse_args()
    # Each client is a socket here and in the reader: allow as many as the hard limit.
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard != resource.RLIM_INFINITY and hard < args.clients + 100:
        sys.stderr.write(f"the open-files hard limit ({hard}) is below --clients\n")
        return 1
    if args.reader:
        asyncio.run(bench(args, args.reader, args.pid, args.redis))
        return 0
    with tempfile.TemporaryDirectory(prefix="sse-bench-") as tmp:
        redis = RedisServer(Path(tmp) / "redis", free_port())
        redis.start()
        env = service_env(redis_url=redis.url, overrides={"REACTIONS_LOG_LEVEL": "WARNING"})
        reader = Service("reader", free_port(), env, Path(tmp) / "logs")
        try:
            reader.start()
            pid = reader.process.pid()
            assert pid is not None
            asyncio.run(bench(args, reader.url, pid, redis.url))
        finally:
            with contextlib.suppress(Exception):
                reader.stop()
            redis.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
