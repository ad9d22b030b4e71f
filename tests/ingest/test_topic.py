"""Topic management at start: created compacted, with the configured partition count and
compaction lag, and a topic with another partition count makes the service refuse to start."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from deploy.local.kafka import KafkaBroker
from deploy.local.process import ROOT, free_port
from deploy.local.services import port_variable, service_env
from tests.support import IngestFactory


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
