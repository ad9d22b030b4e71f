"""Fixtures of the deploy tests: the repository's deploy files, parsed, and one running
stack (the three real services on this session's Kafka and Redis) shared by the package,
with a little traffic driven through it so labelled metrics have children."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from deploy.local.kafka import KafkaBroker
from deploy.local.process import ROOT, free_port
from deploy.local.redis import RedisServer
from deploy.local.services import SERVICE_NAMES, Service, service_env
from tests.support import wait_until

PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
GRAFANA_DIR = ROOT / "deploy" / "grafana"
K8S_DIR = ROOT / "deploy" / "k8s"


def load_yaml(path: Path) -> Any:
    """One YAML document."""
    return yaml.safe_load(path.read_text())


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


def dashboard_exprs(dashboard: dict[str, Any]) -> list[str]:
    """Every PromQL expression of the dashboard's panels."""
    return [
        target["expr"]
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
        if "expr" in target
    ]


def alert_rules() -> list[dict[str, Any]]:
    """Every rule of alerts.yml."""
    groups = load_yaml(PROMETHEUS_DIR / "alerts.yml")["groups"]
    return [rule for group in groups for rule in group["rules"]]


class RunningStack:
    """The three services, started once for the package, and their /metrics texts."""

    def __init__(self, services: dict[str, Service]) -> None:
        self.services = services

    def metrics_text(self, name: str) -> str:
        response = httpx.get(f"{self.services[name].url}/metrics", timeout=10)
        response.raise_for_status()
        return response.text


@pytest.fixture(scope="package")
def running_stack(
    kafka: KafkaBroker, redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningStack]:
    """ingest, aggregator and reader as real processes, with a few reactions applied."""
    topic = f"reactions-{uuid.uuid4().hex[:12]}"
    env = service_env(
        kafka_bootstrap=kafka.bootstrap, redis_url=redis_server.url, topic=topic, partitions=4
    )
    logs = tmp_path_factory.mktemp("deploy-stack")
    services: dict[str, Service] = {}
    try:
        for name in SERVICE_NAMES:
            services[name] = Service(name, free_port(), env, logs)
            services[name].start()
        drive_traffic(services)
        yield RunningStack(services)
    finally:
        for service in reversed(list(services.values())):
            service.stop()


def drive_traffic(services: dict[str, Service]) -> None:
    """A set, a move and a clear through ingest, then reads until the aggregator applied them."""
    ingest, reader = services["ingest"].url, services["reader"].url
    with httpx.Client(timeout=10) as http:
        for user, reaction in (("u1", "love"), ("u2", "wow"), ("u1", "angry")):
            response = http.put(
                f"{ingest}/v1/articles/ops-1/reactions/{user}", json={"reaction": reaction}
            )
            assert response.status_code == 202, response.text
        assert http.delete(f"{ingest}/v1/articles/ops-1/reactions/u2").status_code == 202

        def applied() -> bool:
            body = http.get(f"{reader}/v1/articles/ops-1/reactions", params={"user_id": "u1"})
            return bool(body.status_code == 200 and body.json()["total"] == 1)

        wait_until(applied, timeout=60, what="the aggregator to apply the reactions")
