"""SSE client processes for the benchmark: each holds many raw-socket streams, counts the
tally events on all of them (bytes only) and parses the totals on a sample, so the client
side stays far cheaper than the server it measures; it reports its own CPU time as proof.

`ClientFleet(host, port, paths, processes)` starts the processes (they connect at once),
`wait_connected()` returns when every stream has had its first tally, `collect()` stops
them and returns what they saw."""

from __future__ import annotations

import asyncio
import multiprocessing
import resource
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection

import orjson
import uvloop

EVENT = b"event: tally"


@dataclass
class Seen:
    """What one process's streams received."""

    events: int = 0
    connected: int = 0
    failed: int = 0
    samples: list[list[tuple[float, int]]] = field(default_factory=list)
    cpu_s: float = 0.0


class StreamClient(asyncio.Protocol):
    """One stream: counts `event: tally` occurrences; a sampled one also keeps (time, total)."""

    def __init__(self, seen: Seen, sample: list[tuple[float, int]] | None) -> None:
        self.seen = seen
        self.sample = sample
        self.tail = b""
        self.lines = b""
        self.first = True

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        chunk = self.tail + data
        found = chunk.count(EVENT)
        self.tail = chunk[-(len(EVENT) - 1) :]
        if found:
            self.seen.events += found
            if self.first:
                self.first = False
                self.seen.connected += 1
        if self.sample is not None:
            *complete, self.lines = (self.lines + data).split(b"\n")
            for line in complete:
                if line.startswith(b"data: "):
                    self.sample.append((now, int(orjson.loads(line[6:])["total"])))


async def _run(host: str, port: int, paths: list[str], every: int, pipe: Connection) -> None:
    seen = Seen()
    loop = asyncio.get_running_loop()
    transports = []
    gate = asyncio.Semaphore(200)

    async def connect(i: int, path: str) -> None:
        sample: list[tuple[float, int]] | None = None
        if i % every == 0:
            sample = []
            seen.samples.append(sample)
        async with gate:
            try:
                transport, _ = await loop.create_connection(
                    lambda: StreamClient(seen, sample), host, port
                )
            except OSError:
                seen.failed += 1
                return
            transport.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
            transports.append(transport)

    await asyncio.gather(*(connect(i, p) for i, p in enumerate(paths)))
    while seen.connected + seen.failed < len(paths):
        pipe.send(("progress", seen.connected))
        await asyncio.sleep(0.2)
    pipe.send(("connected", seen.connected))
    await loop.run_in_executor(None, pipe.recv)  # "collect"
    for transport in transports:
        transport.close()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    seen.cpu_s = usage.ru_utime + usage.ru_stime
    pipe.send(("seen", seen))


def _worker(host: str, port: int, paths: list[str], every: int, pipe: Connection) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    uvloop.run(_run(host, port, paths, every, pipe))


class ClientFleet:
    """`len(paths)` streams spread over `processes` client processes."""

    def __init__(
        self, host: str, port: int, paths: list[str], processes: int = 2, sampled: int = 200
    ) -> None:
        context = multiprocessing.get_context("spawn")
        every = max(1, len(paths) // max(sampled, 1))
        self.pipes: list[Connection] = []
        self.procs = []
        for n in range(processes):
            mine, theirs = context.Pipe()
            proc = context.Process(
                target=_worker, args=(host, port, paths[n::processes], every, theirs)
            )
            proc.start()
            self.pipes.append(mine)
            self.procs.append(proc)
        self.started = time.monotonic()

    def wait_connected(self, timeout: float = 300) -> int:
        """Block until every stream had its first tally (or failed); how many connected."""
        connected = 0
        for pipe in self.pipes:
            while True:
                if not pipe.poll(max(0.0, self.started + timeout - time.monotonic())):
                    raise TimeoutError("SSE clients did not connect in time")
                kind, value = pipe.recv()
                if kind == "connected":
                    connected += int(value)
                    break
        return connected

    def collect(self) -> Seen:
        """Close every stream and return what all processes saw."""
        total = Seen()
        for pipe in self.pipes:
            pipe.send("collect")
        for pipe in self.pipes:
            while True:
                kind, value = pipe.recv()
                if kind == "seen":
                    break
            total.events += value.events
            total.connected += value.connected
            total.failed += value.failed
            total.samples += value.samples
            total.cpu_s += value.cpu_s
        for proc in self.procs:
            proc.join(30)
        return total
