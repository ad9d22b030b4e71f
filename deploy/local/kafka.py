"""Kafka for the local stack: KRaft brokers run from the jars in deploy/kafka/lib, alone or
as a cluster of several voting nodes."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Mapping
from pathlib import Path

from deploy.local.process import ROOT, Process, StackError, port_open, wait_for

KAFKA_DIR = ROOT / "deploy" / "kafka"
KAFKA_LIB = KAFKA_DIR / "lib"


def ensure_kafka_jars() -> None:
    """Copy the broker's jars from Maven Central into deploy/kafka/lib if missing."""
    if any(KAFKA_LIB.glob("kafka_2.13-*.jar")):
        return
    if shutil.which("mvn") is None:
        raise StackError("Maven (mvn) is needed to fetch Kafka's jars; run `make setup`")
    subprocess.run(
        [
            "mvn",
            "-q",
            "-B",
            "-f",
            str(KAFKA_DIR / "pom.xml"),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={KAFKA_LIB}",
            "-DincludeScope=runtime",
        ],
        check=True,
    )


class KafkaBroker:
    """One combined broker/controller in KRaft mode, from the jars in deploy/kafka/lib.

    Alone it is a single-node cluster; `KafkaCluster` runs several that vote together.
    """

    def __init__(
        self,
        data_dir: Path,
        port: int,
        controller_port: int,
        *,
        heap: str = "512m",
        extra_config: Mapping[str, str] | None = None,
        node_id: int = 1,
        voters: str | None = None,
        cluster_id: str | None = None,
        replication: int = 1,
    ) -> None:
        self.data_dir = data_dir
        self.port = port
        self.controller_port = controller_port
        self.extra_config = dict(extra_config or {})
        self.heap = heap
        self.node_id = node_id
        self.voters = voters or f"{node_id}@127.0.0.1:{controller_port}"
        self.cluster_id = cluster_id
        self.replication = replication
        self.config_path = data_dir / "server.properties"
        self.process = Process(
            f"kafka-{node_id}" if voters else "kafka",
            self._java("kafka.Kafka", str(self.config_path)),
            [port, controller_port],
            data_dir / "kafka.log",
        )

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _java(self, main: str, *args: str) -> list[str]:
        return [
            "java",
            f"-Xmx{self.heap}",
            f"-Xms{self.heap}",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={KAFKA_DIR / 'log4j2.properties'}",
            f"-Dkafka.logs.dir={self.data_dir / 'logs'}",
            "-cp",
            f"{KAFKA_LIB}/*",
            main,
            *args,
        ]

    def config(self) -> dict[str, str]:
        """Settings for this node: internal topics replicated to `replication` nodes (one,
        alone), a majority of them in sync, and no initial rebalance delay."""
        replication = str(self.replication)
        min_isr = str(self.replication // 2 + 1)
        return {
            "process.roles": "broker,controller",
            "node.id": str(self.node_id),
            "controller.quorum.voters": self.voters,
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(self.data_dir / "data"),
            "num.partitions": "1",
            "auto.create.topics.enable": "false",
            "offsets.topic.replication.factor": replication,
            "offsets.topic.num.partitions": "10",
            "transaction.state.log.replication.factor": replication,
            "transaction.state.log.min.isr": min_isr,
            "share.coordinator.state.topic.replication.factor": replication,
            "share.coordinator.state.topic.min.isr": min_isr,
            "default.replication.factor": replication,
            "min.insync.replicas": min_isr,
            "group.initial.rebalance.delay.ms": "0",
            "log.cleaner.dedupe.buffer.size": str(32 * 1024 * 1024),
            **self.extra_config,
        }

    def format(self) -> None:
        """Write the config and format the KRaft storage (once per data directory)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text("".join(f"{k}={v}\n" for k, v in self.config().items()))
        if (self.data_dir / "data" / "meta.properties").exists():
            return
        cluster_id = self.cluster_id or new_cluster_id()
        result = subprocess.run(
            self._java(
                "kafka.tools.StorageTool",
                "format",
                "-t",
                cluster_id,
                "-c",
                str(self.config_path),
                "--ignore-formatted",
            ),
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            raise StackError(f"formatting Kafka storage failed:\n{result.stdout}{result.stderr}")

    def start(self, timeout: float = 90.0) -> None:
        """Format if needed, start the broker and wait until it answers metadata requests."""
        ensure_kafka_jars()
        self.format()
        self.process.start()
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float = 90.0) -> None:
        def ready() -> bool:
            self.process.check_alive()
            return port_open(self.port) and kafka_answers_metadata(self.bootstrap)

        wait_for(ready, timeout, f"Kafka on port {self.port} (log: {self.data_dir / 'logs'})", 0.25)

    def stop(self) -> None:
        self.process.stop(timeout=30)

    def kill(self) -> None:
        self.process.kill()


def new_cluster_id() -> str:
    """A KRaft cluster id: a random UUID, URL-safe base64 without padding."""
    cluster_id = "-"
    while cluster_id.startswith("-"):  # the storage tool would read it as an option
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
    return cluster_id


def kafka_answers_metadata(bootstrap: str, brokers: int = 1) -> bool:
    """True when the cluster at `bootstrap` answers metadata listing at least `brokers`."""
    from aiokafka.admin import AIOKafkaAdminClient

    # A broker that is still starting refuses connections; that is expected here.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)

    async def probe() -> bool:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=2000)
        try:
            await asyncio.wait_for(admin.start(), 3)
            cluster = await asyncio.wait_for(admin.describe_cluster(), 3)
            return len(cluster.get("brokers", ())) >= brokers
        except Exception:  # noqa: BLE001 - any failure means "not ready yet"
            return False
        finally:
            with contextlib.suppress(Exception):
                await admin.close()

    return asyncio.run(probe())


class KafkaCluster:
    """Several combined broker/controller nodes voting in one KRaft quorum.

    Combined roles keep one JVM per node, which is what fits a laptop or a 2-core CI box;
    production separates controllers from brokers (see README, 'Scaling out').
    """

    def __init__(self, data_dir: Path, ports: list[tuple[int, int]], *, heap: str = "384m") -> None:
        nodes = len(ports)
        voters = ",".join(f"{i + 1}@127.0.0.1:{c}" for i, (_, c) in enumerate(ports))
        cluster_id = new_cluster_id()
        self.brokers = [
            KafkaBroker(
                data_dir / f"kafka-{i + 1}",
                port,
                controller,
                heap=heap,
                node_id=i + 1,
                voters=voters,
                cluster_id=cluster_id,
                replication=min(nodes, 3),
            )
            for i, (port, controller) in enumerate(ports)
        ]

    @property
    def bootstrap(self) -> str:
        return ",".join(b.bootstrap for b in self.brokers)

    def start(self, timeout: float = 120.0) -> None:
        """Start every node, then wait until the cluster lists all of them."""
        ensure_kafka_jars()
        for broker in self.brokers:
            broker.format()
            broker.process.start()

        def ready() -> bool:
            for broker in self.brokers:
                broker.process.check_alive()
            return kafka_answers_metadata(self.bootstrap, brokers=len(self.brokers))

        wait_for(ready, timeout, f"{len(self.brokers)} Kafka nodes to form a cluster", 0.5)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop all nodes together: one by one, the last ones would wait for a lost quorum."""
        for broker in self.brokers:
            broker.process.signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for broker in self.brokers:
            broker.process.stop(timeout=max(deadline - time.monotonic(), 0.1))
