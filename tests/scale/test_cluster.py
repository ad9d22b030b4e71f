"""Scale-out on real clusters: three KRaft nodes (replication 3, min.insync.replicas 2), a
Redis Cluster of three masters with a replica each, two ingest, two reader and three
aggregator processes. Every test ends with the fault suite's oracle."""

from __future__ import annotations

import asyncio
import re
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from redis.asyncio import RedisCluster

from deploy.local.client import MintedTokens, VoteClient
from deploy.local.process import free_port
from deploy.local.redis import RedisServer, redis_cli
from deploy.local.services import UNLIMITED_RATES
from deploy.local.stack import ClusterPorts, ClusterStack
from shared.tallies import counts_key, position_key
from tests.faults.harness import positions
from tests.faults.oracle import assert_oracle
from tests.faults.traffic import Outcome, Traffic, wait_for_outcomes
from tests.support import end_offsets, eventually, metric

TOPIC = "reactions"
ENV = {
    "REACTIONS_TOPIC": TOPIC,
    "REACTIONS_SESSION_TIMEOUT_MS": "6000",
    **UNLIMITED_RATES,
}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterStack]:
    """The scaled-out stack, once for the module (it takes a while to form)."""
    stack = ClusterStack(
        Path(tmp_path_factory.mktemp("cluster")), ClusterPorts.free(), partitions=6, env=ENV
    )
    try:
        stack.up()
        yield stack
    finally:
        stack.down()


@pytest.fixture
async def redis(cluster: ClusterStack) -> AsyncIterator[RedisCluster]:
    """A cluster client on the stack's Redis Cluster."""
    client = RedisCluster.from_url(cluster.redis.url, decode_responses=True)
    yield client
    await client.aclose()


def cluster_tokens(cluster: ClusterStack) -> MintedTokens:
    """Tokens signed with the cluster's development key."""
    return MintedTokens(cluster.keys.issuer())


# Outcomes of every test in the module: they share one topic, so the oracle of a later test
# must know what earlier tests were told.
OUTCOMES: list[Outcome] = []


async def oracle(cluster: ClusterStack, redis: RedisCluster, outcomes: list[Outcome]) -> None:
    OUTCOMES.extend(outcomes)
    report = await assert_oracle(redis, cluster.kafka.bootstrap, TOPIC, OUTCOMES, timeout=180)
    assert report.accepted > 0


async def test_traffic_through_two_ingests_converges_to_the_model(
    cluster: ClusterStack, redis: RedisCluster
) -> None:
    first, second = cluster.service("ingest")
    async with (
        Traffic(first.url, tokens=cluster_tokens(cluster), seed=1, prefix="conv") as a,
        Traffic(second.url, tokens=cluster_tokens(cluster), seed=2, prefix="conv") as b,
    ):
        await wait_for_outcomes(a, 400)
        await wait_for_outcomes(b, 400)
    await oracle(cluster, redis, a.outcomes + b.outcomes)
    # The articles' keys really are spread over the three masters.
    masters = cluster.redis.masters()
    assert len(masters) == 3
    sizes = [int(redis_cli(m.port, "DBSIZE").strip() or 0) for m in masters]
    assert all(size > 0 for size in sizes), sizes
    # Either reader answers the same tally.
    readers = cluster.service("reader")
    async with httpx.AsyncClient(timeout=10) as http:
        answers = [
            (await VoteClient(reader_url=r.url, http=http).tally("conv-0")).json() for r in readers
        ]
    assert answers[0] == answers[1]


async def test_an_aggregator_killed_and_another_added_keep_counts_exact(
    cluster: ClusterStack, redis: RedisCluster
) -> None:
    ingest = cluster.service("ingest")[0]
    victim = cluster.service("aggregator")[0]
    async with Traffic(
        ingest.url, tokens=cluster_tokens(cluster), seed=3, prefix="churn"
    ) as traffic:
        await wait_for_outcomes(traffic, 300)
        victim.kill()
        killed_at = time.monotonic()
        await wait_for_outcomes(traffic, 200, since=killed_at)
        added = cluster.add_service("aggregator", free_port())
        await asyncio.to_thread(added.start)
        await wait_for_outcomes(traffic, 300, since=time.monotonic())
    await oracle(cluster, redis, traffic.outcomes)
    await asyncio.to_thread(victim.start)


@pytest.mark.cluster_full
async def test_a_broker_killed_under_load_loses_no_accepted_event(
    cluster: ClusterStack, redis: RedisCluster
) -> None:
    ingest = cluster.service("ingest")[1]
    broker = cluster.kafka.brokers[2]
    async with Traffic(
        ingest.url, tokens=cluster_tokens(cluster), seed=4, prefix="broker"
    ) as traffic:
        await wait_for_outcomes(traffic, 300)
        broker.kill()
        killed_at = time.monotonic()
        # Leadership moves to the two survivors, which still make min.insync.replicas.
        await wait_for_outcomes(traffic, 400, since=killed_at, timeout=120)
    statuses = traffic.statuses()
    assert set(statuses) <= {202, 503}, statuses
    await oracle(cluster, redis, traffic.outcomes)
    await asyncio.to_thread(broker.process.start)
    await asyncio.to_thread(broker.wait_ready)


@pytest.mark.cluster_full
async def test_a_redis_master_lost_is_restored_by_replay(
    cluster: ClusterStack, redis: RedisCluster
) -> None:
    """A replica promoted after its master dies may lack the master's last writes (Redis
    replicates asynchronously), so the view can fall behind the log. What holds: no write is
    ever doubled (fences), and a replay from the log restores exact counts."""
    ingest = cluster.service("ingest")[0]
    # Not the node every client was seeded with (REACTIONS_REDIS_URL, this test's client):
    # a client that has never connected, such as an aggregator restarted below, knows no
    # other. (Seed production clients through an address that survives a node, or several.)
    seed = cluster.redis.nodes[0]
    master = next(m for m in cluster.redis.masters() if m is not seed)
    async with Traffic(
        ingest.url, tokens=cluster_tokens(cluster), seed=5, prefix="failover"
    ) as traffic:
        await wait_for_outcomes(traffic, 300)
        master.kill()
        killed_at = time.monotonic()
        await eventually(
            lambda: asyncio.to_thread(lambda: len(cluster.redis.masters()) == 3),
            bool,
            timeout=60,
            what="a replica to be promoted",
        )
        await wait_for_outcomes(traffic, 300, since=killed_at, timeout=120)
    # The replay path: aggregators restart without their stored positions, replay the topic
    # from the start, and the fences skip whatever the promoted replica already has.
    aggregators = cluster.service("aggregator")
    for aggregator in aggregators:
        await asyncio.to_thread(aggregator.stop)
    async for key in redis.scan_iter(match=f"rx:pos:{{{TOPIC}}}:*"):
        await redis.delete(key)
    for aggregator in aggregators:
        await asyncio.to_thread(aggregator.start)
    await oracle(cluster, redis, traffic.outcomes)
    await asyncio.to_thread(master.start)


def _replica_of(cluster: ClusterStack, master: RedisServer) -> RedisServer:
    """The node replicating `master` right now."""
    info = redis_cli(master.port, "INFO", "replication")
    port = int(re.search(r"slave0:ip=[^,]+,port=(\d+)", info).group(1))  # type: ignore[union-attr]
    return next(node for node in cluster.redis.nodes if node.port == port)


async def _replays(cluster: ClusterStack) -> float:
    running = [a for a in cluster.service("aggregator") if a.process.pid() is not None]
    return sum([await metric(a.url, "reactions_aggregator_replays_total") for a in running])


@pytest.mark.cluster_full
async def test_a_master_failing_over_to_a_lagging_replica_is_caught_and_replayed(
    cluster: ClusterStack, redis: RedisCluster
) -> None:
    """One master of the cluster, not the one holding the positions, fails over to a replica
    that missed its last writes. The aggregators keep running: they must notice (the
    positions elsewhere are past the lost applies) and replay what that master lost."""
    ingest = cluster.service("ingest")[0]
    await redis.ping()
    keep = {cluster.redis.nodes[0].port, redis.get_node_from_key(position_key(TOPIC, 0)).port}
    master = next(m for m in cluster.redis.masters() if m.port not in keep)
    replica = _replica_of(cluster, master)
    on_master = {
        f"lag-{i}"
        for i in range(200)
        if redis.get_node_from_key(counts_key(f"lag-{i}")).port == master.port
    }
    replays = await _replays(cluster)

    async def lost_votes(since: float) -> int:
        voted = Counter(
            o.article_id
            for o in traffic.outcomes
            if o.accepted and o.started >= since and o.article_id in on_master
        )
        return max(voted.values(), default=0)

    async with Traffic(ingest.url, tokens=cluster_tokens(cluster), seed=6, prefix="lag") as traffic:
        await wait_for_outcomes(traffic, 300)
        # The replica stops, then its link is cut: what the master writes from now on never
        # reaches it (until then, the bytes in the link's buffers still would).
        replica.process.signal(signal.SIGSTOP)
        try:
            assert redis_cli(master.port, "CLIENT", "KILL", "TYPE", "replica").strip() == "1"
            # The master goes on alone: 50 votes on one of its articles, and five more
            # batches, all applied (the positions, on another master, passed them).
            stopped = time.monotonic()
            await eventually(lambda: lost_votes(stopped), lambda n: n >= 50, timeout=120)
            ends = await end_offsets(cluster.kafka.bootstrap, TOPIC)
            await eventually(
                lambda: positions(redis, TOPIC, len(ends)),
                lambda now: all(now.get(p, 0) >= end for p, end in ends.items() if end),
                timeout=120,
                what="the aggregators to apply those votes",
            )
            for _ in range(5):
                before = await positions(redis, TOPIC, len(ends))
                await eventually(
                    lambda: positions(redis, TOPIC, len(ends)),
                    lambda now, before=before: any(now[p] > before.get(p, -1) for p in now),
                    timeout=60,
                    what="another batch",
                )
            master.kill()
        finally:
            replica.process.signal(signal.SIGCONT)
        # The replica takes the master's place without it (its data is older).
        await eventually(
            lambda: asyncio.to_thread(_take_over, replica),
            bool,
            timeout=60,
            interval=0.5,
            what="the lagging replica to take over",
        )
        await wait_for_outcomes(traffic, 300, since=time.monotonic(), timeout=120)
    await oracle(cluster, redis, traffic.outcomes)
    assert await _replays(cluster) > replays
    await asyncio.to_thread(master.start)  # back, as a replica of the one that took over


def _take_over(replica: RedisServer) -> bool:
    """Make `replica` take over its dead master's slots; True once it is a master and its
    cluster serves every slot again."""
    if "role:slave" in redis_cli(replica.port, "INFO", "replication"):
        redis_cli(replica.port, "CLUSTER", "FAILOVER", "TAKEOVER")
        return False
    return "cluster_state:ok" in redis_cli(replica.port, "CLUSTER", "INFO")
