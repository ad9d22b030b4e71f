"""Fixtures of the deploy tests: the repository's deploy files, parsed, and one running
stack (the three real services on this session's Kafka and Redis) shared by the package,
with a little traffic driven through it so labelled metrics have children."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from deploy.local.client import MintedTokens
from deploy.local.kafka import KafkaBroker
from deploy.local.keys import DevelopmentKeys
from deploy.local.process import ROOT, free_port
from deploy.local.redis import RedisServer
from deploy.local.services import SERVICE_NAMES, Service, service_env
from tests.deploy.files import GRAFANA_DIR, load_yaml
from tests.deploy.running_stack import RunningStack, drive_traffic


@pytest.fixture(scope="session")
def compose() -> dict[str, Any]:
    """docker-compose.yml, with its anchors and merge keys resolved."""
    loaded: dict[str, Any] = load_yaml(ROOT / "docker-compose.yml")
    return loaded


@pytest.fixture(scope="session")
def dashboard() -> dict[str, Any]:
    """The provisioned Grafana dashboard."""
    loaded: dict[str, Any] = json.loads((GRAFANA_DIR / "dashboards" / "reactions.json").read_text())
    return loaded


@pytest.fixture(scope="package")
def running_stack(
    kafka: KafkaBroker,
    redis_server: RedisServer,
    tmp_path_factory: pytest.TempPathFactory,
    token_keys: DevelopmentKeys,
    tokens: MintedTokens,
) -> Iterator[RunningStack]:
    """ingest, aggregator and reader as real processes, with a few reactions applied."""
    topic = f"reactions-{uuid.uuid4().hex[:12]}"
    env = service_env(
        kafka_bootstrap=kafka.bootstrap,
        redis_url=redis_server.url,
        topic=topic,
        partitions=4,
        keys=token_keys,
    )
    logs = tmp_path_factory.mktemp("deploy-stack")
    services: dict[str, Service] = {}
    try:
        for name in SERVICE_NAMES:
            services[name] = Service(name, free_port(), env, logs)
            services[name].start()
        drive_traffic(services, tokens)
        yield RunningStack(services)
    finally:
        for service in reversed(list(services.values())):
            service.stop()
