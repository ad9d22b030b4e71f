"""A churn of page streams on the reader, as readers arriving on and leaving front pages
make it: `GET /v1/stream?ids=` of 20 articles opened at a steady rate (open loop: a slow
answer delays no later open), each held a random 1–5 s and closed. It runs in a process of
its own so that it does not share the bench's interpreter, counts what the streams saw
(bytes only: the first `event: tally` of each), and reports its own CPU time."""

from __future__ import annotations

import asyncio
import multiprocessing
import random
import resource
from dataclasses import dataclass
from multiprocessing.connection import Connection

import uvloop

EVENT = b"event: tally"
CONNECT_TIMEOUT_S = 5.0


@dataclass
class ChurnCounts:
    """What the opened streams saw."""

    opened: int = 0  # connected and the request sent
    answered: int = 0  # 200 and at least one tally
    refused: int = 0  # answered with another status (503 full, 429 per client)
    unanswered: int = 0  # closed at the end of its hold before any tally came
    failed: int = 0  # no connection, or closed by the reader before any tally
    events: int = 0
    cpu_s: float = 0.0


class PageStream(asyncio.Protocol):
    """One stream: its status line, then `event: tally` occurrences counted across reads."""

    def __init__(self, counts: ChurnCounts) -> None:
        self.counts = counts
        self.status: bytes | None = None
        self.tail = b""
        self.answered = False
        self.hung_up = False  # closed by us at the end of its hold

    def data_received(self, data: bytes) -> None:
        if self.status is None:
            self.status = data[9:12]  # b"HTTP/1.1 200 OK"
            if self.status != b"200":
                self.counts.refused += 1
        chunk = self.tail + data
        found = chunk.count(EVENT)
        self.tail = chunk[-(len(EVENT) - 1) :]
        self.counts.events += found
        if found and not self.answered and self.status == b"200":
            self.answered = True
            self.counts.answered += 1

    def connection_lost(self, exc: Exception | None) -> None:
        if self.status in (None, b"200") and not self.answered:
            if self.hung_up:
                self.counts.unanswered += 1
            else:
                self.counts.failed += 1


def page_path(rng: random.Random, articles: int, per_page: int, prefix: str) -> str:
    """A page stream of `per_page` distinct articles drawn from `articles`."""
    ids = rng.sample(range(1, articles + 1), per_page)
    return "/v1/stream?ids=" + ",".join(f"{prefix}{i}" for i in ids)


async def churn(
    host: str,
    port: int,
    *,
    rate: float,
    hold_s: tuple[float, float],
    duration_s: float,
    articles: int,
    per_page: int,
    prefix: str,
) -> ChurnCounts:
    """Open `rate` streams a second for `duration_s`, each held a random time in `hold_s`;
    return once every stream is closed."""
    loop = asyncio.get_running_loop()
    rng = random.Random()
    counts = ChurnCounts()

    async def one(path: str, hold: float) -> None:
        try:
            transport, protocol = await asyncio.wait_for(
                loop.create_connection(lambda: PageStream(counts), host, port),
                CONNECT_TIMEOUT_S,
            )
        except (OSError, TimeoutError):
            counts.failed += 1
            return
        counts.opened += 1
        transport.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        await asyncio.sleep(hold)
        protocol.hung_up = True
        transport.close()

    tasks: set[asyncio.Task[None]] = set()
    started = loop.time()
    opened = 0
    while opened < rate * duration_s:
        delay = started + opened / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(
            one(page_path(rng, articles, per_page, prefix), rng.uniform(*hold_s))
        )
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        opened += 1
    if tasks:
        await asyncio.gather(*tasks)
    await asyncio.sleep(0.1)  # let the last connection_lost callbacks run
    usage = resource.getrusage(resource.RUSAGE_SELF)
    counts.cpu_s = usage.ru_utime + usage.ru_stime
    return counts


def _worker(pipe: Connection, host: str, port: int, options: dict[str, object]) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    pipe.send(uvloop.run(churn(host, port, **options)))  # type: ignore[arg-type]


class StreamChurn:
    """The churn in a process of its own, started at once; `result()` waits for its counts."""

    def __init__(
        self,
        url: str,
        *,
        rate: float,
        hold_s: tuple[float, float],
        duration_s: float,
        articles: int = 10_000,
        per_page: int = 20,
        prefix: str = "bench-a",
    ) -> None:
        if not url.startswith("http://127.0.0.1:"):
            raise ValueError(f"refusing to load a non-loopback target: {url}")
        host, port = url.removeprefix("http://").split(":")
        options: dict[str, object] = {
            "rate": rate,
            "hold_s": hold_s,
            "duration_s": duration_s,
            "articles": articles,
            "per_page": per_page,
            "prefix": prefix,
        }
        context = multiprocessing.get_context("spawn")
        self._pipe, theirs = context.Pipe()
        self._process = context.Process(target=_worker, args=(theirs, host, int(port), options))
        self._process.start()
        self.timeout_s = duration_s + hold_s[1] + 60

    def result(self) -> ChurnCounts:
        """The counts, once every stream is closed (TimeoutError if the process hangs)."""
        try:
            if not self._pipe.poll(self.timeout_s):
                raise TimeoutError("the stream churn did not finish in time")
            counts: ChurnCounts = self._pipe.recv()
            return counts
        finally:
            self._process.join(10)
            if self._process.is_alive():
                self._process.kill()
