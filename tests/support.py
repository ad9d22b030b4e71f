"""Helpers for tests: waiting on conditions with deadlines, starting services, reading a
topic back, scraping a metric, the API's error shape, peers that never answer, and clients
that never finish a request."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from deploy.local.keys import DevelopmentKeys
from deploy.local.process import ROOT, free_port
from deploy.local.services import UNLIMITED_RATES, Service, service_env
from services.aggregator.scripts import epoch_script
from shared.tallies import epoch_key, replay_key

T = TypeVar("T")

# start_service(name, *, env=None, wait=True): a service of ours on a free port.
ServiceFactory = Callable[..., Service]
# spawn_ingest(topic, env=None, *, bootstrap=None): an ingest process on the topic.
IngestFactory = Callable[..., Service]


async def eventually(
    probe: Callable[[], Awaitable[T]],
    check: Callable[[T], bool],
    *,
    timeout: float = 30.0,  # noqa: ASYNC109 - a deadline for polling, not for one await
    interval: float = 0.05,
    what: str = "condition",
) -> T:
    """Await `probe()` until `check` holds on its result; fail with the last value seen."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while True:
        last = await probe()
        if check(last):
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")
        await asyncio.sleep(interval)


def wait_until(
    check: Callable[[], bool], *, timeout: float = 30.0, what: str = "condition"
) -> None:
    """Poll a synchronous condition until it holds, or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def start_ingest(
    kafka_bootstrap: str,
    topic: str,
    log_dir: Path,
    env: Mapping[str, str] | None = None,
    started: list[Service] | None = None,
    *,
    keys: DevelopmentKeys,
) -> Service:
    """A real `python -m services.ingest` process on a free port with the token `keys`, ready
    when returned; rate limits lifted unless `env` sets them.

    It is appended to `started` before it is waited for, so a teardown can stop it even
    when it never became ready.
    """
    overrides = {**UNLIMITED_RATES, **(env or {})}
    service_vars = service_env(
        kafka_bootstrap=kafka_bootstrap, topic=topic, partitions=4, keys=keys, overrides=overrides
    )
    service = Service("ingest", free_port(), service_vars, log_dir)
    if started is not None:
        started.append(service)
    service.start()
    return service


@dataclass(frozen=True)
class TopicRecord:
    """One record of a topic as a consumer sees it."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()


async def topic_partitions(
    consumer: AIOKafkaConsumer,
    topic: str,
    timeout: float = 30.0,  # noqa: ASYNC109 - a deadline for polling metadata
) -> list[int]:
    """The partitions of `topic`, once the consumer's metadata knows the topic."""
    deadline = time.monotonic() + timeout
    while True:
        partitions = consumer.partitions_for_topic(topic)
        if partitions:
            return sorted(partitions)
        if time.monotonic() > deadline:
            raise AssertionError(f"topic {topic!r} has no partitions after {timeout}s")
        await consumer._client.force_metadata_update()
        await asyncio.sleep(0.1)


async def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    """The end offset of every partition of `topic`, now."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in await topic_partitions(consumer, topic)]
        ends = await consumer.end_offsets(tps)
        return {tp.partition: offset for tp, offset in ends.items()}
    finally:
        await consumer.stop()


async def read_topic(
    bootstrap: str,
    topic: str,
    *,
    at_least: int = 0,
    timeout: float = 60.0,  # noqa: ASYNC109 - a deadline for the whole read
) -> list[TopicRecord]:
    """Every record of `topic` up to its end offsets, in offset order per partition; with
    `at_least`, read again until the topic holds that many."""
    deadline = time.monotonic() + timeout
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in await topic_partitions(consumer, topic)]
        consumer.assign(tps)
        while True:
            records = await _read_to_end(consumer, tps, deadline)
            if len(records) >= at_least:
                return records
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{topic!r} holds {len(records)} records after {timeout}s, not {at_least}"
                )
            await asyncio.sleep(0.1)
    finally:
        await consumer.stop()


async def _read_to_end(
    consumer: AIOKafkaConsumer, tps: list[TopicPartition], deadline: float
) -> list[TopicRecord]:
    ends = await consumer.end_offsets(tps)
    await consumer.seek_to_beginning(*tps)
    records: dict[int, list[TopicRecord]] = {tp.partition: [] for tp in tps}
    while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
        if time.monotonic() > deadline:
            raise AssertionError(f"reading {tps[0].topic!r} to its end took too long")
        batch = await consumer.getmany(timeout_ms=500)
        for tp, batch_records in batch.items():
            records[tp.partition] += [
                TopicRecord(tp.partition, r.offset, r.key, r.value, tuple(r.headers or ()))
                for r in batch_records
                if r.offset < ends[tp]
            ]
    return [r for tp in tps for r in records[tp.partition]]


def metric_sum(text: str, name: str, labels: Mapping[str, str] | None = None) -> float:
    """The sum of the samples named `name` that carry `labels` in a Prometheus exposition
    (0.0 when there is none)."""
    wanted = dict(labels or {})
    return float(
        sum(
            sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == name and all(sample.labels.get(k) == v for k, v in wanted.items())
        )
    )


async def metric(url: str, name: str, labels: Mapping[str, str] | None = None) -> float:
    """`metric_sum` of a service's /metrics page, now."""
    async with httpx.AsyncClient(timeout=10) as http:
        text = (await http.get(f"{url}/metrics")).text
    return metric_sum(text, name, labels)


def run_schemathesis(
    url: str, token: str, report_dir: Path, *, max_examples: int
) -> subprocess.CompletedProcess[str]:
    """`st run URL/openapi.json --checks all` with the examples, coverage and fuzzing phases
    and a valid reader token in a header; bounded by `max_examples` per operation and a
    fixed seed, so a run is repeatable and takes a minute or two."""
    st = Path(sys.executable).with_name("st")
    return subprocess.run(
        [
            str(st),
            "--config-file",
            str(ROOT / "schemathesis.toml"),
            "run",
            f"{url}/openapi.json",
            "--checks",
            "all",
            "--phases",
            "examples,coverage,fuzzing",
            "--header",
            f"Authorization: Bearer {token}",
            "--max-examples",
            str(max_examples),
            "--seed",
            "20260101",
            "--workers",
            "1",
            "--request-timeout",
            "30",
            "--report-dir",
            str(report_dir),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        # Its working files (a cache of examples) go to the report directory, not the tree.
        cwd=report_dir,
        env={"NO_COLOR": "1", "PATH": "/usr/bin:/bin", "HOME": str(report_dir)},
    )


def assert_error(response: httpx.Response, status: int, code: str | None = None) -> Any:
    """Assert `status` and the API's error shape, {"error": {"code", "message"}}, with
    `code` when given; return the body."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message"}, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"], body
    if code is not None:
        assert body["error"]["code"] == code, body
    return body


@contextlib.contextmanager
def silent_listener() -> Iterator[int]:
    """A loopback port that accepts connections (the kernel completes them) and never
    answers: a frozen peer, as a stopped process or a hung proxy leaves it."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(128)
        port: int = listener.getsockname()[1]
        yield port


def held_open(port: int, partial: bytes) -> socket.socket:
    """A connection to `port` that sent `partial` (an unfinished request) and waits."""
    conn = socket.create_connection(("127.0.0.1", port), timeout=5)
    conn.sendall(partial)
    conn.setblocking(False)
    return conn


@contextlib.contextmanager
def requests_awaiting_bodies(port: int, count: int) -> Iterator[list[socket.socket]]:
    """`count` votes to `port` whose headers are sent and whose bodies never come, each on
    a connection of its own; closed on exit (the caller may close them sooner)."""
    headers = (
        b"POST /v1/votes HTTP/1.1\r\nHost: news.example\r\n"
        b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"
    )
    held = [held_open(port, headers) for _ in range(count)]
    try:
        yield held
    finally:
        for conn in held:
            conn.close()


def closed_by_peer(conn: socket.socket) -> bool:
    """Whether the other side closed `conn` (or answered and closed), without waiting."""
    try:
        while data := conn.recv(4096):
            del data
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True
    return True


@dataclass
class TcpRelay:
    """A TCP relay on a free loopback port to `target_port`, in this event loop.

    `drop_silently()` stops forwarding on every connection open now, in both directions,
    without closing it (no FIN, no RST): a half-open connection, as a NAT or a load
    balancer that forgot the flow leaves it. New connections are relayed as before.
    """

    target_port: int
    port: int = 0
    _server: asyncio.Server | None = None
    _pumps: set[asyncio.Task[None]] = field(default_factory=set)
    _held: list[asyncio.StreamWriter] = field(default_factory=list)

    async def start(self) -> TcpRelay:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def drop_silently(self) -> None:
        """Forget the open connections: nothing more crosses them, nobody is told."""
        for pump in self._pumps:
            pump.cancel()
        self._pumps.clear()

    async def close(self) -> None:
        self.drop_silently()
        if self._server is not None:
            self._server.close()
        for writer in self._held:
            writer.close()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        # Held open after a silent drop: closing them would tell the peers.
        self._held += [writer, up_writer]
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            pump = asyncio.create_task(_pump(source, sink))
            self._pumps.add(pump)
            pump.add_done_callback(self._pumps.discard)


async def _pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError):
        while data := await source.read(65536):
            sink.write(data)
            await sink.drain()
    sink.close()


async def mark_view(redis: Redis, topic: str) -> None:
    """Mark `redis` as an aggregator starting on it marks it (an epoch marker, no replay
    targets: a topic without records); readers serve counts only from a marked Redis."""
    await epoch_script(redis)(keys=[epoch_key(topic), replay_key(topic)], args=["epoch-0"])
