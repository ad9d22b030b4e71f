"""The local stack's life cycle: `up` after `down` brings the same stack back with its data,
for the one-node stack through its command line and for the nodes of a Redis Cluster."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from deploy.local.client import SyncVoteClient
from deploy.local.process import ROOT, free_port
from deploy.local.redis import RedisClusterNodes, free_cluster_port, redis_cli
from deploy.local.services import SERVICE_NAMES, port_variable, service_env
from tests.support import wait_until


def test_a_redis_cluster_forms_again_when_its_nodes_start_after_a_stop(tmp_path: Path) -> None:
    nodes = RedisClusterNodes(tmp_path / "redis", [free_cluster_port() for _ in range(6)])
    try:
        nodes.start()
        seed = nodes.nodes[0].port
        assert redis_cli(seed, "-c", "SET", "kept", "yes").strip() == "OK"
        nodes.stop()
        nodes.start()  # the nodes know their cluster from nodes.conf: no second create
        assert nodes.healthy()
        assert redis_cli(seed, "-c", "GET", "kept").strip() == "yes"
    finally:
        nodes.stop()


def test_the_command_line_starts_the_stack_again_after_down(tmp_path: Path) -> None:
    kafka, redis = free_port(), free_port()
    ports = {name: free_port() for name in SERVICE_NAMES}
    edge_ingest = free_port()
    env = {
        **os.environ,
        **service_env(
            kafka_bootstrap=f"127.0.0.1:{kafka}", redis_url=f"redis://127.0.0.1:{redis}/0"
        ),
        **{port_variable(name): str(port) for name, port in ports.items()},
        "REACTIONS_KAFKA_CONTROLLER_PORT": str(free_port()),
        "REACTIONS_EDGE_PORT": str(free_port()),
        "REACTIONS_EDGE_INGEST_PORT": str(edge_ingest),
        "REACTIONS_STACK_DIR": str(tmp_path / "run"),
    }

    def cli(command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "deploy.local", command],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )

    def up() -> None:
        result = cli("up")
        assert result.returncode == 0, result.stdout + result.stderr
        assert "started: kafka, redis, ingest, aggregator, reader, edge" in result.stdout

    # Writes go through the edge, as the demo page's widget sends them.
    votes = SyncVoteClient(f"http://127.0.0.1:{edge_ingest}", f"http://127.0.0.1:{ports['reader']}")

    def new_token() -> str:
        response = votes.new_reader()
        assert response.status_code == 201, response.text
        token: str = response.json()["token"]
        return token

    def vote_counted(token: str, total: int) -> None:
        response = votes.send(votes.api.vote(token, "cycle", "love"))
        assert response.status_code == 202, response.text
        wait_until(
            lambda: votes.tally("cycle").json()["total"] == total,
            timeout=60,
            what=f"a total of {total}",
        )

    try:
        up()
        # The stack made its development key pair, and gave the reader the public half only.
        keys = tmp_path / "run" / "keys"
        assert (keys / "dev.pem").is_file() and (keys / "jwks.json").is_file()
        first = new_token()
        vote_counted(first, 1)
        assert cli("down").returncode == 0
        status = cli("status").stdout
        assert status.count("stopped") == 6, status
        up()
        assert votes.tally("cycle").json()["total"] == 1  # Redis kept the view
        vote_counted(new_token(), 2)
        # The same key after a restart: a token issued before it still votes.
        assert votes.send(votes.api.vote(first, "cycle", "wow")).status_code == 202
    finally:
        votes.close()
        cli("down")
