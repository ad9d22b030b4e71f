"""Durable accept against a real broker this test owns: stop it mid-traffic, start it
again on the same ports and data, and check that 202 meant "in Kafka" every time."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson
import pytest
from starlette.types import ASGIApp, Receive, Scope, Send

from deploy.local.client import MintedTokens, VoteClient
from deploy.local.kafka import KafkaBroker
from deploy.local.keys import DevelopmentKeys
from deploy.local.process import free_port
from services.ingest.app import create_app
from services.ingest.config import IngestSettings
from services.ingest.deps import IngestState
from services.ingest.publisher import producer_is_broken
from tests.support import IngestFactory, eventually, read_topic


@dataclass
class Answer:
    started: float
    finished: float
    status: int
    event_id: str | None
    key: bytes = b""
    code: str | None = None


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[KafkaBroker]:
    broker = KafkaBroker(tmp_path / "kafka", free_port(), free_port(), heap="384m")
    broker.start()
    yield broker
    broker.stop()


def _counter(
    answers: list[Answer], status: int, started_after: float = float("-inf")
) -> Callable[[], Awaitable[int]]:
    async def probe() -> int:
        return sum(a.status == status and a.started > started_after for a in answers)

    return probe


def _status(http: httpx.AsyncClient, path: str) -> Callable[[], Awaitable[int]]:
    async def probe() -> int:
        return (await http.get(path)).status_code

    return probe


async def test_kafka_outage_gives_503_never_202_and_every_202_is_in_the_topic_once(
    own_broker: KafkaBroker, spawn_ingest: IngestFactory, tokens: MintedTokens
) -> None:
    topic = f"durable-{uuid.uuid4().hex[:8]}"
    service = spawn_ingest(topic, bootstrap=own_broker.bootstrap)
    answers: list[Answer] = []
    stop_traffic = asyncio.Event()

    async def writer(votes: VoteClient, n: int) -> None:
        i = 0
        while not stop_traffic.is_set():
            i += 1
            started = time.monotonic()
            # A hang fails the test through the client timeout: 503 must come in bounded time.
            article, reader = f"art-{n}-{i % 7}", f"a.r{n}-{i}"
            response = await votes.set(article, reader, "like")
            body = response.json()
            answers.append(
                Answer(
                    started,
                    time.monotonic(),
                    response.status_code,
                    body.get("event_id") if response.status_code == 202 else None,
                    f"{article}\x1f{reader}".encode(),
                    body["error"]["code"] if response.status_code == 503 else None,
                )
            )
            if response.status_code == 503:
                assert response.headers["retry-after"].isdigit()
                assert body["error"]["code"] in {"kafka_unavailable", "publish_timeout"}
            await asyncio.sleep(0.02)

    try:
        async with httpx.AsyncClient(base_url=service.url, timeout=20) as http:
            votes = VoteClient(service.url, http=http, tokens=tokens)
            writers = [asyncio.create_task(writer(votes, n)) for n in range(4)]
            await eventually(_counter(answers, 202), lambda n: n >= 20, what="202s")

            await asyncio.to_thread(own_broker.stop)
            stopped_at = time.monotonic()
            await eventually(
                _counter(answers, 503, stopped_at), lambda n: n >= 8, what="503s, Kafka down"
            )
            ready = await http.get("/readyz")
            assert ready.status_code == 503, ready.text
            assert ready.json()["checks"] == {"kafka": False}

            restarting_at = time.monotonic()
            await asyncio.to_thread(own_broker.start)
            await eventually(
                _counter(answers, 202, restarting_at),
                lambda n: n >= 20,
                timeout=90,
                what="202s after Kafka is back",
            )
            await eventually(_status(http, "/readyz"), lambda s: s == 200, what="ready again")
            stop_traffic.set()
            await asyncio.gather(*writers)
    finally:
        stop_traffic.set()
        service.stop()

    assert {a.status for a in answers} <= {202, 503}
    while_down = [a for a in answers if a.started > stopped_at and a.finished < restarting_at]
    assert while_down
    assert all(a.status == 503 for a in while_down)

    # Once Kafka is known down, requests are refused at once, before anything is buffered.
    refused = [a for a in answers if a.code == "kafka_unavailable"]
    assert refused

    accepted = [a.event_id for a in answers if a.status == 202]
    records = await read_topic(own_broker.bootstrap, topic, at_least=len(accepted))
    seen = [orjson.loads(r.value)["event_id"] for r in records]
    for event_id in accepted:
        assert seen.count(event_id) == 1, event_id
    # "kafka_unavailable" is a certain no: none of those requests reached the topic.
    keys = {r.key for r in records}
    assert not [a.key for a in refused if a.key in keys]


def _with_state(app: ASGIApp, state: IngestState) -> ASGIApp:
    """`app` with the lifespan's state in each request's scope, as uvicorn passes it."""

    async def with_state(scope: Scope, receive: Receive, send: Send) -> None:
        await app({**scope, "state": dict(state)}, receive, send)

    return with_state


async def test_a_producer_in_a_fatal_state_is_replaced_once(
    kafka: KafkaBroker, token_keys: DevelopmentKeys, tokens: MintedTokens
) -> None:
    settings = IngestSettings(
        kafka_bootstrap=kafka.bootstrap,
        topic=f"fatal-{uuid.uuid4().hex[:8]}",
        partitions=2,
        publish_timeout_s=10,
        token_signing_key_file=token_keys.signing_key_file,
        token_public_keys_file=token_keys.public_keys_file,
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app) as state:
        publisher = state["publisher"]
        transport = httpx.ASGITransport(app=_with_state(app, state))
        async with httpx.AsyncClient(transport=transport, base_url="http://ingest") as http:
            votes = VoteClient("http://ingest", http=http, tokens=tokens)
            assert (await votes.clear("a", "a.u")).status_code == 202
            broken = publisher.producer
            # aiokafka's sender task ends for good on a fatal error (OutOfOrderSequenceNumber,
            # ProducerFenced…); such a producer accepts sends and never delivers them.
            sender = broken._sender.sender_task
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender
            assert producer_is_broken(broken) and not publisher.healthy()

            concurrent = await asyncio.gather(*(votes.clear(f"a{i}", "a.u") for i in range(20)))
            assert [r.status_code for r in concurrent] == [202] * 20
            assert publisher.producer is not broken
            assert publisher.generation == 2  # one replacement, not one per request
            assert publisher.healthy()
            # A late error from the first producer leaves its successor alone.
            assert publisher.replace(1) is None
            assert (await votes.clear("b", "a.u")).status_code == 202
            assert publisher.generation == 2
