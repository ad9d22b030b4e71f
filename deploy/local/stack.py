"""The stacks: Kafka, Redis, the three services and the nginx edge started in dependency
order, on one node (`make up`) or scaled out (`make up-cluster`)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from deploy.local.edge import EDGE_PAGE_TTL, IngestEdge, NginxEdge
from deploy.local.kafka import KafkaBroker, KafkaCluster
from deploy.local.keys import DevelopmentKeys
from deploy.local.process import ROOT, Process, free_port
from deploy.local.redis import RedisClusterNodes, RedisServer, free_cluster_port
from deploy.local.services import SERVICE_NAMES, Service, configured_ports, service_env
from shared.settings import CommonSettings


class LocalSettings(BaseSettings):
    """What only the local stack reads from the environment (prefix REACTIONS_)."""

    model_config = SettingsConfigDict(env_prefix="REACTIONS_", extra="ignore", frozen=True)

    stack_dir: Path = Field(ROOT / ".run", description="Logs and data of the local stack.")
    kafka_controller_port: int | None = Field(
        None, ge=1, le=65535, description="The KRaft controller port; unset: Kafka's + 1."
    )
    cluster_base_port: int = Field(
        19000, ge=2001, le=55000, description="Where the scaled-out stack's fixed ports start."
    )
    edge_port: int = Field(
        8080, ge=1, le=65535, description="The nginx edge in front of the reader."
    )
    edge_ingest_port: int = Field(
        8081, ge=1, le=65535, description="The nginx edge in front of ingest (the writes)."
    )
    edge_page_ttl: str = Field(
        EDGE_PAGE_TTL,
        pattern=r"^[1-9][0-9]*(ms|s|m|h)?$",
        description="How long the edge keeps a page's bulk read (an nginx time: 30s, 1m).",
    )


@dataclass
class StackConfig:
    """Ports and data directory of the local stack."""

    kafka_port: int
    controller_port: int
    redis_port: int
    service_ports: dict[str, int]
    state_dir: Path
    edge_port: int = 8080
    edge_ingest_port: int = 8081
    edge_page_ttl: str = EDGE_PAGE_TTL

    @classmethod
    def from_settings(cls, local: LocalSettings | None = None) -> StackConfig:
        """The ports the services' own settings read (REACTIONS_ variables, same defaults),
        so the stack listens where the services will connect."""
        local = local or LocalSettings()
        common = CommonSettings()
        kafka_port = int(common.kafka_bootstrap.split(",")[0].rsplit(":", 1)[1])
        return cls(
            kafka_port=kafka_port,
            controller_port=local.kafka_controller_port or kafka_port + 1,
            redis_port=urlparse(common.redis_url).port or 6379,
            service_ports=configured_ports(),
            state_dir=local.stack_dir,
            edge_port=local.edge_port,
            edge_ingest_port=local.edge_ingest_port,
            edge_page_ttl=local.edge_page_ttl,
        )


# The reader and ingest believe the X-Forwarded-For of the edge in front of them (the
# reader's stream cap per client and ingest's limits per client network then see the
# browser).
EDGE_TRUST = {"REACTIONS_TRUSTED_PROXIES": "127.0.0.1/32"}


class Stack:
    """Kafka, Redis, the three services and the nginx edge, started in dependency order."""

    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self.kafka = KafkaBroker(
            config.state_dir / "kafka", config.kafka_port, config.controller_port
        )
        self.redis = RedisServer(config.state_dir / "redis", config.redis_port)
        # A development key pair, made by the first `up`: tokens issued by `make run` stay
        # valid across restarts of the stack.
        self.keys = DevelopmentKeys(config.state_dir / "keys")
        env = service_env(
            kafka_bootstrap=self.kafka.bootstrap,
            redis_url=self.redis.url,
            ingest_port=config.service_ports["ingest"],
            keys=self.keys,
        )
        ingest_edge = IngestEdge(
            config.edge_ingest_port, f"127.0.0.1:{config.service_ports['ingest']}"
        )
        behind_edge = {
            "ingest": EDGE_TRUST,
            # The demo page's widget writes through the edge.
            "reader": {
                **EDGE_TRUST,
                "REACTIONS_PUBLIC_INGEST_URL": f"http://127.0.0.1:{ingest_edge.port}",
            },
        }
        self.services = {
            name: Service(
                name,
                config.service_ports[name],
                {**env, **behind_edge.get(name, {})},
                config.state_dir / "logs",
            )
            for name in SERVICE_NAMES
        }
        self.edge = NginxEdge(
            config.state_dir / "edge",
            config.edge_port,
            config.service_ports["reader"],
            config.edge_page_ttl,
            ingest_edge,
        )

    def parts(self) -> Iterator[tuple[str, Process]]:
        yield "kafka", self.kafka.process
        yield "redis", self.redis.process
        for name, service in self.services.items():
            yield name, service.process
        yield "edge", self.edge.process

    def up(self) -> list[str]:
        """Start every part that is not running; leave running parts alone."""
        DevelopmentKeys.ensure(self.keys.directory, self.keys.kid)
        started = []
        if self.kafka.process.pid() is None:
            self.kafka.start()
            started.append("kafka")
        if self.redis.process.pid() is None:
            self.redis.start()
            started.append("redis")
        for name, service in self.services.items():
            if service.process.pid() is None:
                service.start()
                started.append(name)
        if self.edge.process.pid() is None:
            self.edge.start()
            started.append("edge")
        return started

    def down(self) -> None:
        """Stop the edge and the services first, then Redis and Kafka; safe to run twice."""
        self.edge.stop()
        for service in reversed(list(self.services.values())):
            service.stop()
        self.redis.stop()
        self.kafka.stop()

    def status(self) -> dict[str, int | None]:
        return {name: process.pid() for name, process in self.parts()}

    def urls(self) -> dict[str, str]:
        reader = self.services["reader"].url
        return {
            "demo (via the edge)": f"{self.edge.url}/demo",
            "edge (nginx)": self.edge.url,
            "ingest via the edge (nginx)": self.edge.ingest_url,
            "ingest": self.services["ingest"].url,
            "reader": reader,
            "aggregator metrics": f"{self.services['aggregator'].url}/metrics",
        }


@dataclass
class ClusterPorts:
    """Ports of the scaled-out stack: Kafka nodes, Redis Cluster nodes, service instances."""

    kafka: list[tuple[int, int]]
    redis: list[int]
    ingest: list[int]
    reader: list[int]
    aggregator: list[int]

    @classmethod
    def from_base(cls, base: int) -> ClusterPorts:
        """Fixed ports from `base` (default 19000), so `up` and `down` agree across runs.

        Redis nodes take base-2000…, whose cluster buses sit 10000 above them.
        """
        return cls(
            kafka=[(base + 92 + 10 * i, base + 93 + 10 * i) for i in range(3)],
            redis=[base - 2000 + i for i in range(6)],
            ingest=[base + 500 + 10 * i for i in range(2)],
            reader=[base + 501 + 10 * i for i in range(2)],
            aggregator=[base + 502 + 10 * i for i in range(3)],
        )

    @classmethod
    def free(cls) -> ClusterPorts:
        """Free ports, for tests."""
        return cls(
            kafka=[(free_port(), free_port()) for _ in range(3)],
            redis=[free_cluster_port() for _ in range(6)],
            ingest=[free_port() for _ in range(2)],
            reader=[free_port() for _ in range(2)],
            aggregator=[free_port() for _ in range(3)],
        )


class ClusterStack:
    """Three KRaft nodes (replication 3, min.insync.replicas 2), a Redis Cluster of three
    masters with a replica each, two ingest, two reader and three aggregator processes."""

    def __init__(
        self,
        state_dir: Path,
        ports: ClusterPorts,
        partitions: int = 12,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.state_dir = state_dir
        self.kafka = KafkaCluster(state_dir / "kafka", ports.kafka)
        self.redis = RedisClusterNodes(state_dir / "redis", ports.redis, replicas=1)
        self.keys = DevelopmentKeys.ensure(state_dir / "keys")
        self.env = service_env(
            kafka_bootstrap=self.kafka.bootstrap,
            redis_url=self.redis.url,
            partitions=partitions,
            cluster=True,
            keys=self.keys,
            overrides=env,
        )
        self.services: list[Service] = []
        for name in SERVICE_NAMES:
            for i, port in enumerate(getattr(ports, name)):
                self.services.append(
                    Service(name, port, self.env, state_dir / "logs" / f"{name}-{i + 1}")
                )

    def service(self, name: str) -> list[Service]:
        """The instances of one service."""
        return [s for s in self.services if s.name == name]

    def add_service(self, name: str, port: int) -> Service:
        """One more instance of a service (not started), with the cluster's environment."""
        n = len(self.service(name)) + 1
        service = Service(name, port, self.env, self.state_dir / "logs" / f"{name}-{n}")
        self.services.append(service)
        return service

    def up(self) -> list[str]:
        """Start whatever is not running; create the Redis Cluster if it is not formed."""
        started = []
        if any(b.process.pid() is None for b in self.kafka.brokers):
            self.kafka.start()
            started.append("kafka x3")
        self.redis.start()
        for service in self.services:
            if service.process.pid() is None:
                service.start()
                started.append(f"{service.name}:{service.port}")
        return started

    def down(self) -> None:
        """Stop everything; safe to run twice."""
        for service in reversed(self.services):
            service.stop()
        self.redis.stop()
        self.kafka.stop()
