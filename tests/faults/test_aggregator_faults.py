"""Aggregator faults: killed mid-batch, a zombie after a rebalance, a rebalance storm."""

from __future__ import annotations

import asyncio
import random
import signal
import time

import pytest

from deploy.local.services import Service
from shared.events import ReactionEvent, partition_for
from shared.tallies import position_key
from tests.faults.harness import (
    WRONG_PARTITION,
    applied_beyond_position,
    assigned_partitions,
    group_members,
    positions,
    produce_raw,
)
from tests.faults.rig import PARTITIONS, Rig
from tests.faults.traffic import wait_for_outcomes
from tests.support import eventually, metric, read_topic


async def pause_mid_batch(
    rig: Rig,
    aggregator: Service,
    *,
    owned: list[int] | None = None,
    timeout: float = 90.0,  # noqa: ASYNC109 - a deadline for the retries
) -> list[str]:
    """SIGSTOP the aggregator at a moment when it has applied a batch to Redis but not yet
    stored the batch's positions; return the articles applied beyond their position (of the
    `owned` partitions only, when another member owns the others).

    The test hook that picks the moment: stop the process, look at Redis, and resume it to
    try again a moment later when it is between batches. Redis is read twice: a write the
    process sent just before it stopped has landed by the second read.
    """
    rnd = random.Random()
    deadline = time.monotonic() + timeout
    while True:
        aggregator.process.signal(signal.SIGSTOP)
        beyond = await applied_beyond_position(rig.redis, rig.topic, PARTITIONS, only=owned)
        if beyond:
            again = await applied_beyond_position(rig.redis, rig.topic, PARTITIONS, only=owned)
            beyond = [article for article in beyond if article in again]
        if beyond:
            return beyond
        aggregator.process.signal(signal.SIGCONT)
        if time.monotonic() > deadline:
            raise AssertionError(
                f"never caught the aggregator mid-batch (a batch applied to Redis, its "
                f"positions not stored) in {timeout}s"
            )
        await asyncio.sleep(rnd.uniform(0.0, 0.1))


async def test_aggregator_killed_mid_batch_recounts_nothing(rig: Rig) -> None:
    ingest = rig.start("ingest")
    async with rig.traffic(ingest, seed=7) as traffic:
        # A backlog makes the aggregator's batches large, so it is often caught mid-batch.
        await wait_for_outcomes(traffic, 1500)
        aggregator = await rig.launch("aggregator")
        await eventually(
            lambda: positions(rig.redis, rig.topic, PARTITIONS),
            lambda pos: len(pos) == PARTITIONS,
            timeout=60,
            what="the aggregator to store a position for every partition",
        )
        beyond = await pause_mid_batch(rig, aggregator)
        aggregator.kill()
        killed_at = time.monotonic()
        # The kill must land mid-batch: the articles caught applied beyond their stored
        # positions are still so once the process is gone (had it run on between the look
        # at Redis and the SIGKILL, it could have stored the positions meanwhile).
        left = await applied_beyond_position(rig.redis, rig.topic, PARTITIONS)
        assert set(beyond) <= set(left), (
            f"the kill landed after the batch's positions were stored: {sorted(beyond)} "
            f"were applied beyond their positions, only {sorted(left)} are left"
        )
        await wait_for_outcomes(traffic, 200, since=killed_at)
        restarted = await rig.launch("aggregator")
        await wait_for_outcomes(traffic, 200, since=time.monotonic())
    report = await rig.oracle(traffic.outcomes)
    assert report.accepted > 1900
    # The restart replayed the batch from the stored positions; the fences skipped it.
    duplicates = await metric(
        restarted.url, "reactions_aggregator_events_total", {"outcome": "duplicate"}
    )
    assert duplicates > 0, "the fenced-duplicate counter should show the skipped replay"


@pytest.mark.faults_full
async def test_zombie_aggregator_cannot_double_count(rig: Rig) -> None:
    ingest = rig.start("ingest")
    first = rig.start("aggregator")
    second = rig.start("aggregator")
    await eventually(
        lambda: group_members(rig.bootstrap, rig.group),
        lambda g: g == ("Stable", 2),
        timeout=60,
        what="both aggregators to join the group",
    )
    async with rig.traffic(ingest, seed=11) as traffic:
        await wait_for_outcomes(traffic, 1500)
        owned = await eventually(
            lambda: asyncio.to_thread(assigned_partitions, first.process.log_path),
            lambda partitions: 0 < len(partitions) < PARTITIONS,
            timeout=30,
            what="the first aggregator's share of the partitions in its log",
        )
        # Stopped while it holds a batch: applied to Redis, positions not yet stored. (Had it
        # been stopped between batches, waking up would show nothing about zombies.)
        held = await pause_mid_batch(rig, first, owned=owned)
        assert held, "the zombie was stopped holding no batch"
        try:
            # The broker expels the stopped member after the session timeout and the other
            # aggregator takes over all partitions, resuming from the positions in Redis.
            await eventually(
                lambda: group_members(rig.bootstrap, rig.group),
                lambda g: g == ("Stable", 1),
                timeout=60,
                what="the live aggregator to take over",
            )
            taken_over = await positions(rig.redis, rig.topic, PARTITIONS)
            await wait_for_outcomes(traffic, 500, since=time.monotonic())
            await eventually(
                lambda: positions(rig.redis, rig.topic, PARTITIONS),
                lambda pos: all(pos[p] > taken_over.get(p, 0) for p in range(PARTITIONS)),
                timeout=60,
                what="the live aggregator to advance every partition",
            )
        finally:
            # The zombie wakes up with the batch it held and tries to apply and commit it.
            first.process.signal(signal.SIGCONT)
        await wait_for_outcomes(traffic, 500, since=time.monotonic())
    assert second.process.pid() is not None, "the live aggregator kept running"
    await rig.oracle(traffic.outcomes)


@pytest.mark.faults_full
async def test_rebalance_storm_keeps_counts_exact(rig: Rig) -> None:
    ingest = rig.start("ingest")
    rig.start("aggregator")
    rnd = random.Random(5)
    extras: list[Service] = []
    async with rig.traffic(ingest, seed=13) as traffic:
        await wait_for_outcomes(traffic, 500)
        for round_ in range(4):
            while len(extras) < 2:
                extras.append(await rig.launch("aggregator"))
            await eventually(
                lambda: group_members(rig.bootstrap, rig.group),
                lambda g: g == ("Stable", 3),
                timeout=60,
                what=f"three aggregators in the group (round {round_})",
            )
            await wait_for_outcomes(traffic, 200, since=time.monotonic())
            leaving = extras.pop(rnd.randrange(len(extras)))
            # Alternate a crash (the member lingers until its session times out) and a
            # clean leave (an immediate rebalance).
            if round_ % 2 == 0:
                leaving.kill()
            else:
                await asyncio.to_thread(leaving.stop)
        for service in extras:
            service.kill()
        await wait_for_outcomes(traffic, 200, since=time.monotonic())
    await rig.oracle(traffic.outcomes)


async def _replay_everything(rig: Rig, aggregator: Service) -> Service:
    """Stop the aggregator, forget every stored position and start it again: it replays the
    whole topic, which the fences must turn into a no-op."""
    await asyncio.to_thread(aggregator.stop)
    for partition in range(PARTITIONS):
        await rig.redis.delete(position_key(rig.topic, partition))
    return await rig.launch("aggregator")


@pytest.mark.faults_full
async def test_replaying_the_whole_topic_changes_nothing(rig: Rig) -> None:
    ingest = rig.start("ingest")
    aggregator = rig.start("aggregator")
    async with rig.traffic(ingest, seed=47) as traffic:
        await wait_for_outcomes(traffic, 800)
    await rig.oracle(traffic.outcomes)
    await _replay_everything(rig, aggregator)
    report = await rig.oracle(traffic.outcomes)
    assert await positions(rig.redis, rig.topic, PARTITIONS) == {
        p: max(r.offset for r in report.records if r.partition == p) + 1 for p in range(PARTITIONS)
    }, "the replay went through every partition to its end"


@pytest.mark.faults_full
async def test_event_on_a_foreign_partition_cannot_reopen_a_fence(rig: Rig) -> None:
    ingest = rig.start("ingest")
    aggregator = rig.start("aggregator")
    async with rig.traffic(ingest, articles=20, seed=53) as traffic:
        await wait_for_outcomes(traffic, 300)
    # A well-formed event from a producer that partitions differently (by the whole key,
    # say): the aggregator must not apply it, or the article's fence would name a foreign
    # partition and the next replay of the article's own partition would count it again.
    home = partition_for("a-0", PARTITIONS)
    stray = ReactionEvent.new("set", "a-0", "stray-reader", "like")
    await produce_raw(
        rig.bootstrap, rig.topic, [((home + 1) % PARTITIONS, stray.key(), stray.encode())]
    )
    await rig.oracle(traffic.outcomes)
    letters = await eventually(
        lambda: read_topic(rig.bootstrap, f"{rig.topic}.dlq"),
        lambda found: len(found) >= 1,
        timeout=60,
        what="the stray event in the DLQ",
    )
    assert [r.value for r in letters] == [stray.encode()]
    await _replay_everything(rig, aggregator)
    report = await rig.oracle(traffic.outcomes)
    assert [reason for _, reason in report.model.invalid] == [WRONG_PARTITION]
    # A replay of the whole topic dead-letters the stray again (the DLQ is at-least-once);
    # it never lets anything else through.
    letters = await read_topic(rig.bootstrap, f"{rig.topic}.dlq")
    assert {r.value for r in letters} == {stray.encode()}
