"""Topic management at start: created compacted, with the configured partition count and
compaction lag, and a topic with another partition count makes the service refuse to start."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from deploy.local.client import MintedTokens, VoteClient
from deploy.local.kafka import KafkaBroker
from deploy.local.process import ROOT, free_port
from deploy.local.services import port_variable, service_env
from tests.support import IngestFactory, ServiceFactory, wait_until


async def test_missing_topic_is_created_compacted_with_the_configured_partitions(
    kafka: KafkaBroker, spawn_ingest: IngestFactory
) -> None:
    topic = f"created-{uuid.uuid4().hex[:8]}"
    service = spawn_ingest(topic, {"REACTIONS_PARTITIONS": "6"})
    service.stop()
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap)
    await admin.start()
    try:
        [described] = await admin.describe_topics([topic])
        assert len(described["partitions"]) == 6
        wanted = ("cleanup.policy", "min.compaction.lag.ms", "min.insync.replicas")
        [configs] = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic, configs=dict.fromkeys(wanted))]
        )
        # resources: (error_code, error_message, type, name, [(name, value, …), …])
        entries = {entry[0]: entry[1] for entry in configs.resources[0][4]}
        # A week of compaction lag: the cleaner never drops a record a lagging aggregator
        # has not read yet.
        assert entries == {
            "cleanup.policy": "compact",
            "min.compaction.lag.ms": "604800000",
            "min.insync.replicas": "1",
        }
    finally:
        await admin.close()


async def test_a_topic_with_another_partition_count_stops_the_service(
    kafka: KafkaBroker, tmp_path: Path
) -> None:
    topic = f"mismatch-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])
    finally:
        await admin.close()

    env = service_env(
        kafka_bootstrap=kafka.bootstrap,
        topic=topic,
        partitions=5,
        overrides={port_variable("ingest"): str(free_port()), "PATH": "/usr/bin:/bin"},
    )
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "services.ingest"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "has 3 partitions but 5 are configured" in result.stdout + result.stderr


async def test_ingest_and_the_aggregator_wait_for_a_kafka_that_starts_after_them(
    start_service: ServiceFactory, tmp_path: Path, tokens: MintedTokens
) -> None:
    """Started before their broker (a cold start of everything, or during its restart), they
    try again every second within REACTIONS_KAFKA_STARTUP_TIMEOUT_S and then serve."""
    late = KafkaBroker(tmp_path / "late-kafka", free_port(), free_port())
    env = {"REACTIONS_KAFKA_BOOTSTRAP": late.bootstrap, "REACTIONS_KAFKA_STARTUP_TIMEOUT_S": "120"}
    services = [start_service(name, env=env, wait=False) for name in ("ingest", "aggregator")]
    try:
        for service in services:
            log = service.process.log_path
            await asyncio.to_thread(
                wait_until,
                lambda log=log: log.exists() and "kafka_not_reachable_yet" in log.read_text(),
                what=f"{service.name} to wait for Kafka",
            )
        await asyncio.to_thread(late.start)
        for service in services:
            await asyncio.to_thread(service.wait_ready, 90)
        async with VoteClient(services[0].url, tokens=tokens) as votes:
            assert (await votes.set("late-1", "a.late", "like")).status_code == 202
    finally:
        for service in services:
            service.stop()
        late.stop()


async def test_without_kafka_they_exit_with_one_clear_line(kafka: KafkaBroker) -> None:
    nowhere = f"127.0.0.1:{free_port()}"  # nothing listens there
    for name in ("ingest", "aggregator"):
        env = service_env(
            kafka_bootstrap=nowhere,
            overrides={
                port_variable(name): str(free_port()),
                "REACTIONS_KAFKA_STARTUP_TIMEOUT_S": "2",
                "PATH": "/usr/bin:/bin",
            },
        )
        result = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", f"services.{name}"],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        output = result.stdout + result.stderr
        assert result.returncode == 1, (name, output)
        [line] = [json.loads(x) for x in result.stdout.splitlines() if "kafka_unreachable" in x]
        assert line["bootstrap"] == nowhere and line["level"] == "error", line
        assert "Traceback" not in output, output
