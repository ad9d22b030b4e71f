"""`make up-cluster` after `make down-cluster`: the scaled-out stack comes back whole, with
the Kafka nodes' log and the Redis Cluster's data of the first run."""

from __future__ import annotations

from pathlib import Path

import pytest

from deploy.local.client import MintedTokens, SyncVoteClient
from deploy.local.services import UNLIMITED_RATES
from deploy.local.stack import ClusterPorts, ClusterStack
from tests.support import wait_until


# Three Kafka nodes, six Redis nodes and seven services started twice: over a minute.
@pytest.mark.cluster_full
def test_the_scaled_out_stack_starts_again_after_down(tmp_path: Path) -> None:
    stack = ClusterStack(
        tmp_path / "cluster", ClusterPorts.free(), partitions=6, env=UNLIMITED_RATES
    )
    ingest = stack.service("ingest")[0].url
    tokens = MintedTokens(stack.keys.issuer())
    readers = [SyncVoteClient(ingest, r.url, tokens=tokens) for r in stack.service("reader")]

    def vote_counted(user: str, expected: int) -> None:
        response = readers[0].set("restart", user, "wow")
        assert response.status_code == 202, response.text
        wait_until(
            lambda: all(r.tally("restart").json()["total"] == expected for r in readers),
            timeout=90,
            what=f"a total of {expected} on every reader",
        )

    try:
        stack.up()
        vote_counted("a.u1", 1)
        stack.down()
        assert all(s.process.pid() is None for s in stack.services)
        started = stack.up()
        assert "kafka x3" in started and len(started) == 1 + len(stack.services), started
        assert stack.redis.healthy()
        vote_counted("a.u2", 2)
    finally:
        for reader in readers:
            reader.close()
        stack.down()
