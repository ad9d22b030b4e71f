"""Start and stop the local stack: a real KRaft Kafka broker, a real redis-server and the
three services, without Docker. Used by `make run/up/down` and by the test fixtures.

`python -m deploy.stack run` runs everything in the foreground until Ctrl-C; `up` starts
whatever part is not running and returns; `down` stops everything (safe to run twice).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
KAFKA_DIR = ROOT / "deploy" / "kafka"
KAFKA_LIB = KAFKA_DIR / "lib"
STATE_DIR = Path(os.environ.get("REACTIONS_STACK_DIR", ROOT / ".run"))


class StackError(RuntimeError):
    """A part of the stack could not be started; the message says what to do."""


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    """True when something accepts connections on host:port."""
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


def wait_for(
    condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.1
) -> None:
    """Poll `condition` until it holds, or raise StackError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval)
    raise StackError(f"timed out after {timeout:.0f}s waiting for {what}")


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


@dataclass
class Process:
    """A child process with a log file, a pid file and a readiness condition."""

    name: str
    argv: list[str]
    ports: list[int]
    log_path: Path
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: Path = ROOT
    proc: subprocess.Popen[bytes] | None = None

    @property
    def pid_path(self) -> Path:
        return self.log_path.with_suffix(".pid")

    def pid(self) -> int | None:
        """The pid of the running process (ours, or one a previous `up` left), if alive."""
        if self.proc is not None:
            return self.proc.pid if self.proc.poll() is None else None
        try:
            pid = int(self.pid_path.read_text())
        except (FileNotFoundError, ValueError):
            return None
        return pid if _alive(pid) else None

    def start(self) -> None:
        for port in self.ports:
            if port_open(port):
                raise StackError(
                    f"port {port} is already in use, so {self.name} cannot start; stop what "
                    f"listens there (`ss -ltnp 'sport = :{port}'`) or configure another port"
                )
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **self.env},
                cwd=self.cwd,
                start_new_session=True,
            )
        self.pid_path.write_text(str(self.proc.pid))

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise StackError(
                f"{self.name} exited with status {self.proc.returncode}; "
                f"see {self.log_path}:\n{tail(self.log_path)}"
            )

    def signal(self, sig: int) -> None:
        pid = self.pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM, then SIGKILL after `timeout`; safe to call twice."""
        pid = self.pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while _alive(pid) and time.monotonic() < deadline:
                if self.proc is not None:
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        self.proc.wait(0.1)
                else:
                    time.sleep(0.1)
            if _alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                if self.proc is not None:
                    self.proc.wait(5)
        self.proc = None
        self.pid_path.unlink(missing_ok=True)

    def kill(self) -> None:
        """SIGKILL at once, as a crash would."""
        pid = self.pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            if self.proc is not None:
                self.proc.wait(10)
        self.proc = None
        self.pid_path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped) is not alive.
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


def tail(path: Path, lines: int = 20) -> str:
    """The last lines of a log file, for error messages."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


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


class RedisServer:
    """Debian's redis-server with AOF on and noeviction, data in its own directory."""

    def __init__(
        self, data_dir: Path, port: int, *, maxmemory: str | None = None, cluster: bool = False
    ) -> None:
        self.data_dir = data_dir
        self.port = port
        args = [
            shutil.which("redis-server") or "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(data_dir),
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--save",
            "",
            "--maxmemory-policy",
            "noeviction",
            "--protected-mode",
            "no",
            "--daemonize",
            "no",
            "--loglevel",
            "notice",
        ]
        if maxmemory:
            args += ["--maxmemory", maxmemory]
        if cluster:
            # The cluster bus listens on port + 10000.
            args += [
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                "3000",
            ]
        name = f"redis-{port}" if cluster else "redis"
        self.process = Process(name, args, [port], data_dir / "redis.log")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 20.0) -> None:
        if shutil.which("redis-server") is None:
            raise StackError("redis-server is not installed; run `make setup`")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.process.start()

        def ready() -> bool:
            self.process.check_alive()
            return redis_answers_ping(self.port)

        wait_for(ready, timeout, f"redis-server on port {self.port}")

    def stop(self) -> None:
        self.process.stop()

    def kill(self) -> None:
        self.process.kill()


def redis_answers_ping(port: int) -> bool:
    """True when a Redis on loopback `port` answers PING with PONG (not LOADING)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


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


class RedisClusterNodes:
    """A Redis Cluster of `masters` masters with `replicas` replicas each, made by
    `redis-cli --cluster create` from real redis-server processes."""

    def __init__(self, data_dir: Path, ports: list[int], replicas: int = 1) -> None:
        self.replicas = replicas
        self.nodes = [RedisServer(data_dir / f"redis-{port}", port, cluster=True) for port in ports]

    @property
    def url(self) -> str:
        return self.nodes[0].url

    def start(self, timeout: float = 60.0) -> None:
        """Start the nodes that are not running and create the cluster if it is not formed."""
        for node in self.nodes:
            if node.process.pid() is None:
                node.start()
        if self.healthy():
            return
        result = subprocess.run(
            [
                shutil.which("redis-cli") or "redis-cli",
                "--cluster",
                "create",
                *(f"127.0.0.1:{n.port}" for n in self.nodes),
                "--cluster-replicas",
                str(self.replicas),
                "--cluster-yes",
            ],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if result.returncode != 0:
            raise StackError(f"redis-cli --cluster create failed:\n{result.stdout}{result.stderr}")
        wait_for(self.healthy, timeout, "the Redis Cluster to report cluster_state:ok", 0.2)

    def healthy(self) -> bool:
        """True when every node reports cluster_state:ok."""
        return all(
            "cluster_state:ok" in redis_cli(node.port, "CLUSTER", "INFO") for node in self.nodes
        )

    def masters(self) -> list[RedisServer]:
        """The nodes that are masters right now."""
        return [n for n in self.nodes if "role:master" in redis_cli(n.port, "INFO", "replication")]

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


def free_cluster_port() -> int:
    """A free port whose cluster-bus twin (port + 10000) is free too."""
    while True:
        port = free_port()
        if port + 10000 < 65536 and not port_open(port + 10000):
            return port


def redis_cli(port: int, *args: str) -> str:
    """Run one command with redis-cli against a loopback Redis; its output, or '' on error."""
    try:
        result = subprocess.run(
            [shutil.which("redis-cli") or "redis-cli", "-p", str(port), *args],
            capture_output=True,
            text=True,
            timeout=5,
        )
    except subprocess.TimeoutExpired:
        return ""
    return result.stdout


class Service:
    """One of our services as a real process: `python -m services.<name>` (or `module`),
    ready once its /readyz answers 200."""

    def __init__(
        self,
        name: str,
        port: int,
        env: Mapping[str, str],
        log_dir: Path,
        args: list[str] | None = None,
        *,
        module: str | None = None,
    ) -> None:
        self.name = name
        self.port = port
        self.process = Process(
            name,
            [sys.executable, "-m", module or f"services.{name}", *(args or [])],
            [port],
            log_dir / f"{name}.log",
            env=env,
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> None:
        self.process.start()
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float = 60.0) -> None:
        def ready() -> bool:
            self.process.check_alive()
            return http_ok(f"{self.url}/readyz")

        wait_for(ready, timeout, f"{self.name} /readyz on port {self.port}", 0.2)

    def stop(self) -> None:
        self.process.stop()

    def kill(self) -> None:
        self.process.kill()


def http_ok(url: str) -> bool:
    """True when GET `url` answers 200."""
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


SERVICE_NAMES = ("ingest", "aggregator", "reader")


@dataclass
class StackConfig:
    """Ports of the local stack, from the same REACTIONS_ variables the services read."""

    kafka_port: int
    controller_port: int
    redis_port: int
    service_ports: dict[str, int]
    state_dir: Path

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> StackConfig:
        bootstrap = env.get("REACTIONS_KAFKA_BOOTSTRAP", "localhost:9092").split(",")[0]
        kafka_port = int(bootstrap.rsplit(":", 1)[1])
        redis_url = urlparse(env.get("REACTIONS_REDIS_URL", "redis://localhost:6379/0"))
        return cls(
            kafka_port=kafka_port,
            controller_port=int(env.get("REACTIONS_KAFKA_CONTROLLER_PORT", kafka_port + 1)),
            redis_port=redis_url.port or 6379,
            service_ports={
                "ingest": int(env.get("REACTIONS_INGEST_PORT", 8000)),
                "reader": int(env.get("REACTIONS_READER_PORT", 8001)),
                "aggregator": int(env.get("REACTIONS_AGGREGATOR_PORT", 8002)),
            },
            state_dir=STATE_DIR,
        )


class Stack:
    """Kafka, Redis and the three services, started in dependency order."""

    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self.kafka = KafkaBroker(
            config.state_dir / "kafka", config.kafka_port, config.controller_port
        )
        self.redis = RedisServer(config.state_dir / "redis", config.redis_port)
        env = {
            "REACTIONS_KAFKA_BOOTSTRAP": self.kafka.bootstrap,
            "REACTIONS_REDIS_URL": self.redis.url,
            **{f"REACTIONS_{n.upper()}_PORT": str(p) for n, p in config.service_ports.items()},
        }
        self.services = {
            name: Service(name, config.service_ports[name], env, config.state_dir / "logs")
            for name in SERVICE_NAMES
        }

    def parts(self) -> Iterator[tuple[str, Process]]:
        yield "kafka", self.kafka.process
        yield "redis", self.redis.process
        for name, service in self.services.items():
            yield name, service.process

    def up(self) -> list[str]:
        """Start every part that is not running; leave running parts alone."""
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
        return started

    def down(self) -> None:
        """Stop services first, then Redis and Kafka; safe to run twice."""
        for service in reversed(list(self.services.values())):
            service.stop()
        self.redis.stop()
        self.kafka.stop()

    def status(self) -> dict[str, int | None]:
        return {name: process.pid() for name, process in self.parts()}

    def urls(self) -> dict[str, str]:
        reader = self.services["reader"].url
        return {
            "demo": f"{reader}/demo",
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
        self.env = {
            "REACTIONS_KAFKA_BOOTSTRAP": self.kafka.bootstrap,
            "REACTIONS_REDIS_URL": self.redis.url,
            "REACTIONS_REDIS_CLUSTER": "true",
            "REACTIONS_REPLICATION_FACTOR": "3",
            "REACTIONS_PARTITIONS": str(partitions),
            **(env or {}),
        }
        self.services: list[Service] = []
        for name in ("ingest", "aggregator", "reader"):
            for i, port in enumerate(getattr(ports, name)):
                env = {**self.env, f"REACTIONS_{name.upper()}_PORT": str(port)}
                self.services.append(
                    Service(name, port, env, state_dir / "logs" / f"{name}-{i + 1}")
                )

    def service(self, name: str) -> list[Service]:
        """The instances of one service."""
        return [s for s in self.services if s.name == name]

    def add_service(self, name: str, port: int) -> Service:
        """One more instance of a service (not started), with the cluster's environment."""
        env = {**self.env, f"REACTIONS_{name.upper()}_PORT": str(port)}
        n = len(self.service(name)) + 1
        service = Service(name, port, env, self.state_dir / "logs" / f"{name}-{n}")
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


def cluster_main(command: str) -> int:
    """`up-cluster` / `down-cluster` for the scaled-out local stack."""
    base = int(os.environ.get("REACTIONS_CLUSTER_BASE_PORT", 19000))
    stack = ClusterStack(STATE_DIR / "cluster", ClusterPorts.from_base(base))
    out = sys.stdout.write
    if command == "down-cluster":
        stack.down()
        out("cluster stopped\n")
        return 0
    try:
        started = stack.up()
    except StackError as exc:
        out(f"error: {exc}\n")
        return 1
    out(f"started: {', '.join(started) or 'nothing (all parts were running)'}\n")
    out(f"  kafka bootstrap     {stack.kafka.bootstrap}\n")
    out(f"  redis cluster       {stack.redis.url}\n")
    for service in stack.services:
        out(f"  {service.name:<19} {service.url}\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    """`run`, `up`, `down` or `status` for the local stack; `up-cluster`, `down-cluster`."""
    parser = argparse.ArgumentParser(prog="python -m deploy.stack", description=__doc__)
    parser.add_argument(
        "command", choices=["run", "up", "down", "status", "up-cluster", "down-cluster"]
    )
    args = parser.parse_args(argv)
    if args.command.endswith("-cluster"):
        return cluster_main(args.command)
    stack = Stack(StackConfig.from_env())
    out = sys.stdout.write
    if args.command == "down":
        stack.down()
        out("stack stopped\n")
        return 0
    if args.command == "status":
        for name, pid in stack.status().items():
            out(f"{name:<11} {'running, pid ' + str(pid) if pid else 'stopped'}\n")
        return 0
    try:
        started = stack.up()
    except StackError as exc:
        out(f"error: {exc}\n")
        if args.command == "run":
            stack.down()
        return 1
    out(f"started: {', '.join(started) or 'nothing (all parts were running)'}\n")
    for name, url in stack.urls().items():
        out(f"  {name:<19} {url}\n")
    out(f"logs in {stack.config.state_dir}\n")
    if args.command == "up":
        return 0
    out("running; press Ctrl-C to stop everything\n")
    stopping = False

    def on_signal(_sig: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        while not stopping:
            for name, process in stack.parts():
                if process.pid() is None:
                    out(f"{name} stopped unexpectedly; see {process.log_path}\n")
                    stopping = True
            time.sleep(0.5)
    finally:
        out("stopping…\n")
        stack.down()
        out("stack stopped\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
