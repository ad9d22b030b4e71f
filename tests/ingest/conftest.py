"""Fixtures of the ingest tests: one ingest process per module for the plain contract
checks, and ingest processes started per test."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy.local.kafka import KafkaBroker
from deploy.local.keys import DevelopmentKeys
from deploy.local.services import Service
from tests.support import IngestFactory, start_ingest


@pytest.fixture
def spawn_ingest(
    kafka: KafkaBroker, tmp_path: Path, token_keys: DevelopmentKeys
) -> Iterator[IngestFactory]:
    """Start ingest processes on the session broker; all of them stop after the test."""
    started: list[Service] = []

    def spawn(
        topic: str, env: dict[str, str] | None = None, *, bootstrap: str | None = None
    ) -> Service:
        log_dir = tmp_path / f"ingest-{len(started)}"
        return start_ingest(
            bootstrap or kafka.bootstrap, topic, log_dir, env, started, keys=token_keys
        )

    yield spawn
    for service in reversed(started):
        service.stop()


@pytest.fixture(scope="module")
def module_topic() -> str:
    """A topic of this module's own."""
    return f"ingest-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="module")
def ingest(
    kafka: KafkaBroker,
    module_topic: str,
    tmp_path_factory: pytest.TempPathFactory,
    token_keys: DevelopmentKeys,
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
            keys=token_keys,
        )
    finally:
        for service in started:
            service.stop()
