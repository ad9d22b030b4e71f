"""Redis for the local stack: Debian's redis-server, alone or as the nodes of a Redis
Cluster, and redis-cli for one-off commands."""

from __future__ import annotations

import shutil
import socket
import subprocess
from pathlib import Path

from deploy.local.process import Process, StackError, free_port, port_open, wait_for


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


class RedisClusterNodes:
    """A Redis Cluster of `masters` masters with `replicas` replicas each, made by
    `redis-cli --cluster create` from real redis-server processes."""

    def __init__(self, data_dir: Path, ports: list[int], replicas: int = 1) -> None:
        self.data_dir = data_dir
        self.replicas = replicas
        self.nodes = [RedisServer(data_dir / f"redis-{port}", port, cluster=True) for port in ports]

    @property
    def url(self) -> str:
        return self.nodes[0].url

    def start(self, timeout: float = 60.0) -> None:
        """Start the nodes that are not running and create the cluster if they form none.

        Each node keeps its view of the cluster in its nodes.conf, so nodes started again
        after a stop find each other and form the same cluster: wait for it, since
        `redis-cli --cluster create` refuses nodes that already know a cluster.
        """
        for node in self.nodes:
            if node.process.pid() is None:
                node.start()
        if not self.formed():
            self._create(timeout)
            what = "the Redis Cluster to report cluster_state:ok"
        else:
            what = (
                "the Redis Cluster to form again from its nodes' nodes.conf "
                f"(if it cannot, remove {self.data_dir} to create it afresh)"
            )
        wait_for(self.healthy, timeout, what, 0.2)

    def formed(self) -> bool:
        """True when a node already belongs to a cluster: it knows other nodes or has slots."""
        for node in self.nodes:
            info = cluster_info(node.port)
            if int(info.get("cluster_known_nodes", 1)) > 1:
                return True
            if int(info.get("cluster_slots_assigned", 0)) > 0:
                return True
        return False

    def _create(self, timeout: float) -> None:
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

    def healthy(self) -> bool:
        """True when every node reports cluster_state:ok."""
        return all(cluster_info(node.port).get("cluster_state") == "ok" for node in self.nodes)

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


def cluster_info(port: int) -> dict[str, str]:
    """CLUSTER INFO of a loopback node as a dict (empty when it does not answer)."""
    lines = redis_cli(port, "CLUSTER", "INFO").splitlines()
    return dict(line.strip().split(":", 1) for line in lines if ":" in line)
