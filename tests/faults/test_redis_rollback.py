"""Redis goes back in time under a running aggregator: a lagging replica takes the primary's
place, or redis-server restarts from a copy of its data older than the last batches. The
aggregator must notice before any later apply hides the loss, and replay what was lost."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from deploy.local.process import free_port
from deploy.local.redis import RedisServer
from tests.faults.harness import positions
from tests.faults.oracle import assert_oracle
from tests.faults.relay import Relay
from tests.faults.rig import PARTITIONS, Rig
from tests.faults.traffic import Traffic, wait_for_outcomes
from tests.support import end_offsets, eventually, metric

REPLAYS = "reactions_aggregator_replays_total"
# What Redis loses, at least: this many of the aggregator's batches, and this many votes on
# one article (a hot article: it is voted on again after the loss, so its fence moves on).
LOST_BATCHES = 5
LOST_VOTES = 50


async def _batches_applied(rig: Rig, n: int) -> None:
    """Wait until the aggregator has stored newer positions `n` times over."""
    for _ in range(n):
        before = await positions(rig.redis, rig.topic, PARTITIONS)
        await eventually(
            lambda: positions(rig.redis, rig.topic, PARTITIONS),
            lambda now, before=before: any(now[p] > before.get(p, -1) for p in now),
            timeout=60,
            what="the aggregator to apply another batch",
        )


async def _applied_what_will_be_lost(rig: Rig, traffic: Traffic, since: float) -> None:
    """Wait until Redis (`rig.redis`) has applied what it is about to lose: LOST_BATCHES more
    batches, and LOST_VOTES votes on one article accepted after `since`."""

    async def hottest() -> int:
        voted = Counter(o.article_id for o in traffic.outcomes if o.accepted and o.started >= since)
        return max(voted.values(), default=0)

    await eventually(hottest, lambda n: n >= LOST_VOTES, what=f"{LOST_VOTES} votes on an article")
    ends = await end_offsets(rig.bootstrap, rig.topic)
    await eventually(
        lambda: positions(rig.redis, rig.topic, PARTITIONS),
        lambda now: all(now.get(p, 0) >= end for p, end in ends.items() if end),
        timeout=60,
        what="the aggregator to apply those votes",
    )
    await _batches_applied(rig, LOST_BATCHES)


@pytest.fixture
async def replica(tmp_path: Path) -> AsyncIterator[RedisServer]:
    """A second redis-server, to be made a replica of the test's Redis."""
    server = RedisServer(tmp_path / "replica", free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture
def relay(fault_redis: RedisServer, tmp_path: Path) -> Iterator[Relay]:
    """A TCP relay to the test's Redis: the aggregator's way to it, moved at will."""
    relay = Relay(free_port(), ("127.0.0.1", fault_redis.port), tmp_path / "relay")
    relay.start()
    yield relay
    relay.stop()


@pytest.mark.faults_full
async def test_a_lagging_replica_promoted_under_the_aggregator_is_caught_and_replayed(
    rig: Rig, replica: RedisServer, relay: Relay
) -> None:
    promoted = Redis.from_url(replica.url, decode_responses=True)
    try:
        await promoted.replicaof("127.0.0.1", str(rig.redis_server.port))
        await eventually(
            lambda: promoted.info("replication"),
            lambda info: info.get("master_link_status") == "up",
            what="the replica to sync with the primary",
        )
        ingest = rig.start("ingest")
        aggregator = rig.start("aggregator", REACTIONS_REDIS_URL=relay.url)
        async with rig.traffic(ingest, seed=41) as traffic:
            await wait_for_outcomes(traffic, 300)
            await _batches_applied(rig, 1)
            # The replica stops following: from now on it misses what the primary applies.
            await promoted.replicaof("NO", "ONE")
            await _applied_what_will_be_lost(rig, traffic, since=time.monotonic())
            # It takes the primary's place (a failover behind a stable address).
            await asyncio.to_thread(relay.retarget, "127.0.0.1", replica.port)
            rig.redis_server.kill()
            await wait_for_outcomes(traffic, 300, since=time.monotonic())
        await assert_oracle(promoted, rig.bootstrap, rig.topic, traffic.outcomes)
        assert await metric(aggregator.url, REPLAYS) > 0
    finally:
        await promoted.aclose()


@pytest.mark.faults_full
async def test_redis_restarted_from_an_older_copy_is_caught_and_replayed(rig: Rig) -> None:
    server = rig.redis_server
    aof = server.data_dir / "appendonlydir"
    copy = server.data_dir.parent / "appendonlydir-copy"
    ingest = rig.start("ingest")
    aggregator = rig.start("aggregator")
    async with rig.traffic(ingest, seed=43) as traffic:
        await wait_for_outcomes(traffic, 300)
        await _batches_applied(rig, 1)
        # A copy of the data while it runs, as a backup or a lagging disk would have it.
        rewrites = int((await rig.redis.info("persistence"))["aof_rewrites"])
        await rig.redis.bgrewriteaof()
        await eventually(
            lambda: rig.redis.info("persistence"),
            lambda info: (
                int(info["aof_rewrites"]) > rewrites and not int(info["aof_rewrite_in_progress"])
            ),
            what="the AOF rewrite",
        )
        await asyncio.to_thread(shutil.copytree, aof, copy)
        await _applied_what_will_be_lost(rig, traffic, since=time.monotonic())
        # Redis restarts on the same port from the older copy.
        server.kill()
        shutil.rmtree(aof)
        shutil.copytree(copy, aof)
        await asyncio.to_thread(server.start)
        await wait_for_outcomes(traffic, 300, since=time.monotonic())
    assert aggregator.process.pid() is not None
    await rig.oracle(traffic.outcomes)
    assert await metric(aggregator.url, REPLAYS) > 0
