"""Fixtures of the ingest tests: one ingest process per module for the plain contract
checks, and a reader for the topic the service writes to."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, ConsumerRecord

from deploy.local.kafka import KafkaBroker
from deploy.local.process import free_port
from deploy.local.services import UNLIMITED_RATES, Service, service_env


def start_ingest(
    kafka_bootstrap: str,
    topic: str,
    log_dir: Path,
    env: dict[str, str] | None = None,
    started: list[Service] | None = None,
) -> Service:
    """A real `python -m services.ingest` process on a free port, ready when returned.

    It is appended to `started` before it is waited for, so a teardown can stop it even
    when it never became ready.
    """
    # Contract tests never meet the rate limits; abuse tests set their own in `env`.
    service = Service(
        "ingest",
        free_port(),
        service_env(
            kafka_bootstrap=kafka_bootstrap,
            topic=topic,
            partitions=4,
            overrides={**UNLIMITED_RATES, **(env or {})},
        ),
        log_dir,
    )
    if started is not None:
        started.append(service)
    service.start()
    return service


IngestFactory = Callable[..., Service]


@pytest.fixture
def spawn_ingest(kafka: KafkaBroker, tmp_path: Path) -> Iterator[IngestFactory]:
    """Start ingest processes on the session broker; all of them stop after the test."""
    started: list[Service] = []

    def spawn(
        topic: str, env: dict[str, str] | None = None, *, bootstrap: str | None = None
    ) -> Service:
        log_dir = tmp_path / f"ingest-{len(started)}"
        return start_ingest(bootstrap or kafka.bootstrap, topic, log_dir, env, started)

    yield spawn
    for service in reversed(started):
        service.stop()


@pytest.fixture(scope="module")
def module_topic() -> str:
    """A topic of this module's own."""
    return f"ingest-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="module")
def ingest(
    kafka: KafkaBroker, module_topic: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Service]:
    """One ingest process for a module, with configured types like, love and boo."""
    started: list[Service] = []
    try:
        yield start_ingest(
            kafka.bootstrap,
            module_topic,
            tmp_path_factory.mktemp("ingest-logs"),
            {"REACTIONS_TYPES": "like,love,boo"},
            started,
        )
    finally:
        for service in started:
            service.stop()


async def read_topic(bootstrap: str, topic: str, expected: int) -> list[ConsumerRecord]:
    """Every record of `topic` from the start, once at least `expected` have arrived."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
    )
    await consumer.start()
    records: list[ConsumerRecord] = []
    try:
        async with asyncio.timeout(60):
            while len(records) < expected:
                batch = await consumer.getmany(timeout_ms=500)
                for part in batch.values():
                    records.extend(part)
            # Drain whatever else is there: duplicates must be seen, not missed.
            while batch := await consumer.getmany(timeout_ms=1000):
                for part in batch.values():
                    records.extend(part)
    finally:
        await consumer.stop()
    return records
