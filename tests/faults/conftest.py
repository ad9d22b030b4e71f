"""Fixtures of the fault suite: every test gets a redis-server of its own (so it may kill,
pause, wipe or starve it) and a `Rig` that starts the services against it; the broker is the
session's unless the test needs one of its own to kill."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from deploy.local.client import MintedTokens
from deploy.local.kafka import KafkaBroker
from deploy.local.process import free_port
from deploy.local.redis import RedisServer
from deploy.local.services import UNLIMITED_RATES, service_env
from tests.faults.rig import LARGE_RECORD_BYTES, PARTITIONS, SESSION_TIMEOUT_MS, Rig
from tests.support import ServiceFactory


@pytest.fixture
def fault_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test's own (AOF everysec, noeviction)."""
    server = RedisServer(tmp_path / "redis", free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture
def stack_env(stack_env: dict[str, str], fault_redis: RedisServer) -> dict[str, str]:
    """The services' environment, pointed at this test's Redis, with a short session timeout."""
    return {
        **stack_env,
        **service_env(
            redis_url=fault_redis.url,
            partitions=PARTITIONS,
            overrides={
                "REACTIONS_SESSION_TIMEOUT_MS": str(SESSION_TIMEOUT_MS),
                # All traffic comes from one IP and a few hundred readers: lift ingest's
                # rate limits, which are not what these tests are about.
                **UNLIMITED_RATES,
            },
        ),
    }


@pytest.fixture
async def rig(
    stack_env: dict[str, str],
    fault_redis: RedisServer,
    start_service: ServiceFactory,
    tokens: MintedTokens,
) -> AsyncIterator[Rig]:
    """The stack on the session's broker and this test's own Redis."""
    # Retries, because the tests kill and restart this Redis under the client's feet.
    redis = Redis.from_url(
        fault_redis.url,
        decode_responses=True,
        socket_timeout=10,
        retry=Retry(ExponentialBackoff(cap=1.0), retries=20),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
    )
    yield Rig(
        bootstrap=stack_env["REACTIONS_KAFKA_BOOTSTRAP"],
        topic=stack_env["REACTIONS_TOPIC"],
        group=stack_env["REACTIONS_GROUP_ID"],
        redis_server=fault_redis,
        redis=redis,
        start_service=start_service,
        tokens=tokens,
    )
    await redis.aclose()


@pytest.fixture
def own_kafka(tmp_path: Path) -> Iterator[KafkaBroker]:
    """A broker of this test's own, for tests that kill it."""
    broker = KafkaBroker(tmp_path / "kafka", free_port(), free_port())
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
async def kafka_rig(own_kafka: KafkaBroker, rig: Rig) -> Rig:
    """The rig on a broker of the test's own (started first, so it stops after the services)."""
    rig.bootstrap = own_kafka.bootstrap
    rig.env = service_env(kafka_bootstrap=own_kafka.bootstrap)  # the keys stay the session's
    return rig


@pytest.fixture
def roomy_kafka(tmp_path: Path) -> Iterator[KafkaBroker]:
    """A broker of the test's own that takes records up to LARGE_RECORD_BYTES (its topics
    inherit the limit), as a cluster raised for big messages would."""
    limit = str(LARGE_RECORD_BYTES)
    broker = KafkaBroker(
        tmp_path / "kafka",
        free_port(),
        free_port(),
        extra_config={"message.max.bytes": limit, "replica.fetch.max.bytes": limit},
    )
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
async def roomy_rig(roomy_kafka: KafkaBroker, rig: Rig) -> Rig:
    """The rig on a broker that takes big records."""
    rig.bootstrap = roomy_kafka.bootstrap
    rig.env = service_env(kafka_bootstrap=roomy_kafka.bootstrap)
    return rig
