"""A topic created before the compaction lag and min.insync.replicas were set (the old way):
the services refuse it naming both values, `align-topic` aligns it, the services start.
The partition count and replication factor are refused, never altered."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import orjson
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from deploy.local.kafka import KafkaBroker
from deploy.local.process import ROOT
from services.aggregator.align import reassignment_plan
from shared.kafka import topic_configs, topic_replicas
from tests.support import ServiceFactory

# An override an operator set on the topic: aligning must keep it.
RETENTION = ("retention.ms", "86400000")


async def create_the_old_way(bootstrap: str, topic: str, partitions: int = 4) -> None:
    """The topic as the services created it before: compacted, nothing else."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        configs = {"cleanup.policy": "compact", RETENTION[0]: RETENTION[1]}
        await admin.create_topics([NewTopic(topic, partitions, 1, topic_configs=configs)])
    finally:
        await admin.close()


async def configs_of(bootstrap: str, topic: str) -> dict[str, str | None]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return {name: value for name, (value, _) in (await topic_configs(admin, topic)).items()}
    finally:
        await admin.close()


async def replicas_of(bootstrap: str, topic: str) -> dict[int, list[int]]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return await topic_replicas(admin, topic)
    finally:
        await admin.close()


async def run(
    env: dict[str, str], *args: str, module: str = "services.aggregator"
) -> subprocess.CompletedProcess[str]:
    """A service or command as a process, to its exit (a refusal must come quickly)."""
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", module, *args],
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def refusals(output: str) -> list[dict[str, object]]:
    lines = [orjson.loads(line) for line in output.splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("event") == "refusing_to_start"]


async def test_an_old_topic_is_refused_naming_both_values_then_aligned(
    kafka: KafkaBroker, topic: str, stack_env: dict[str, str], start_service: ServiceFactory
) -> None:
    await create_the_old_way(kafka.bootstrap, topic)

    for module in ("services.ingest", "services.aggregator"):
        refused = await run(stack_env, module=module)
        assert refused.returncode == 2, refused.stdout + refused.stderr
        [line] = refusals(refused.stdout)
        assert "min.compaction.lag.ms is 0 but 604800000 is configured" in str(line["reason"])
        assert "align-topic" in str(line["reason"])
        assert {"setting": "min.compaction.lag.ms", "actual": "0", "configured": "604800000"} in (
            line["differences"]  # type: ignore[operator]
        )

    aligned = await run(stack_env, "align-topic")
    assert aligned.returncode == 0, aligned.stdout + aligned.stderr
    assert f"{topic}: min.compaction.lag.ms 0 -> 604800000" in aligned.stdout
    configs = await configs_of(kafka.bootstrap, topic)
    assert configs["min.compaction.lag.ms"] == "604800000"
    assert configs["cleanup.policy"] == "compact"
    assert configs["min.insync.replicas"] == "1"
    assert configs[RETENTION[0]] == RETENTION[1], "an operator's own override was dropped"

    again = await run(stack_env, "align-topic")
    assert again.returncode == 0 and "already as configured" in again.stdout
    start_service("ingest")
    start_service("aggregator")


async def test_partitions_and_replication_are_refused_with_what_to_do(
    kafka: KafkaBroker, topic: str, stack_env: dict[str, str]
) -> None:
    await create_the_old_way(kafka.bootstrap, topic, partitions=3)
    env = {**stack_env, "REACTIONS_REPLICATION_FACTOR": "2"}

    refused = await run(env)
    assert refused.returncode == 2
    [line] = refusals(refused.stdout)
    assert "has 3 partitions but 4 are configured" in str(line["reason"])
    assert "replication factor is 1 but 2 is configured" in str(line["reason"])

    aligned = await run(env, "align-topic")
    assert aligned.returncode == 2
    assert "cannot change in place" in aligned.stderr
    # One broker cannot hold two replicas: the command says so rather than plan the impossible.
    assert "the cluster has 1 broker(s)" in aligned.stderr
    # Nothing was changed: settings that name another layout (a mistyped environment) must
    # not alter a live topic's configs either; they are named, to align once it matches.
    assert "nothing was changed" in aligned.stderr and "min.compaction.lag.ms" in aligned.stderr
    assert (await configs_of(kafka.bootstrap, topic))["min.compaction.lag.ms"] == "0"
    assert await replicas_of(kafka.bootstrap, topic) == {0: [1], 1: [1], 2: [1]}


def test_a_reassignment_plan_keeps_the_replicas_and_spreads_the_new_ones() -> None:
    plan = reassignment_plan("t", {0: [1], 1: [2], 2: [3], 3: [1, 2, 3, 4]}, [1, 2, 3, 4], 3)
    assert plan == {
        "version": 1,
        "partitions": [
            {"topic": "t", "partition": 0, "replicas": [1, 2, 3]},
            {"topic": "t", "partition": 1, "replicas": [2, 3, 4]},
            {"topic": "t", "partition": 2, "replicas": [3, 4, 1]},
            {"topic": "t", "partition": 3, "replicas": [1, 2, 3]},
        ],
    }
