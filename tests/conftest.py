"""Session fixtures: one real Kafka broker and one real redis-server on free ports,
started here and stopped at the end; the services run as real processes per test."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from deploy.local.client import MintedTokens
from deploy.local.kafka import KafkaBroker
from deploy.local.keys import DevelopmentKeys
from deploy.local.process import free_port
from deploy.local.redis import RedisServer
from deploy.local.services import Service, service_env
from tests.support import ServiceFactory


@pytest.fixture(scope="session")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    """A real single-node KRaft broker for the whole test session."""
    broker = KafkaBroker(tmp_path_factory.mktemp("kafka"), free_port(), free_port())
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A real redis-server (AOF on, noeviction) for the whole test session."""
    server = RedisServer(tmp_path_factory.mktemp("redis"), free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def redis(redis_server: RedisServer) -> AsyncIterator[Redis]:
    """A client on an emptied Redis: each test starts from no state."""
    client = Redis.from_url(redis_server.url, decode_responses=True)
    await client.flushall()
    yield client
    await client.aclose()


@pytest.fixture(scope="session")
def token_keys(tmp_path_factory: pytest.TempPathFactory) -> DevelopmentKeys:
    """The reader-token key pair every service of the session is given."""
    return DevelopmentKeys.ensure(tmp_path_factory.mktemp("keys"))


@pytest.fixture(scope="session")
def tokens(token_keys: DevelopmentKeys) -> MintedTokens:
    """Reader tokens minted with the session's signing key, for any reader id."""
    return MintedTokens(token_keys.issuer())


@pytest.fixture
def topic() -> str:
    """A topic name of this test's own, so tests never see each other's events."""
    return f"reactions-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def stack_env(
    kafka: KafkaBroker, redis_server: RedisServer, topic: str, token_keys: DevelopmentKeys
) -> dict[str, str]:
    """The REACTIONS_ environment pointing the services at this session's Kafka, Redis and
    token keys."""
    return service_env(
        kafka_bootstrap=kafka.bootstrap,
        redis_url=redis_server.url,
        topic=topic,
        partitions=4,
        keys=token_keys,
    )


@pytest.fixture
def start_service(stack_env: dict[str, str], tmp_path: Path) -> Iterator[ServiceFactory]:
    """Start `python -m services.<name>` on a free port; everything started stops after the test."""
    started: list[Service] = []

    def start(name: str, *, env: dict[str, str] | None = None, wait: bool = True) -> Service:
        log_dir = tmp_path / "logs" / f"{name}-{len(started)}"
        service = Service(name, free_port(), {**stack_env, **(env or {})}, log_dir)
        started.append(service)
        if wait:
            service.start()
        else:
            service.process.start()
        return service

    yield start
    for service in reversed(started):
        service.stop()


@pytest.fixture
def pipeline(start_service: ServiceFactory) -> tuple[Service, Service]:
    """Ingest, the aggregator and the reader running on this test's stack: (ingest, reader)."""
    ingest = start_service("ingest")
    start_service("aggregator")
    return ingest, start_service("reader")
