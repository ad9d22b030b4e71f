"""`align-topic`: bring an existing topic's configs to the settings, so that a topic created
before a setting existed (or by hand) can be used again.

Configs (`cleanup.policy`, `min.compaction.lag.ms`, `min.insync.replicas`) are altered in
place. The partition count and the replication factor are not configs: the command refuses
to touch them and prints what to do instead (a migration to a new topic; a reassignment).
While either differs it changes nothing at all: settings that name another topic layout
(a mistyped environment, say) must not lower a live topic's `min.insync.replicas` first.
"""

from __future__ import annotations

import sys
from typing import Any

import orjson
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from services.aggregator.commands import CommandError
from services.aggregator.config import AggregatorSettings
from shared.kafka import (
    TopicDifference,
    TopicSpec,
    topic_configs,
    topic_differences,
    topic_replicas,
)
from shared.logs import get_logger
from shared.shutdown import close_within

log = get_logger(__name__)


async def align_topic(settings: AggregatorSettings) -> list[TopicDifference]:
    """Set the topic's configs to the settings; returns what was changed.

    Raises CommandError, changing nothing, when the partition count or the replication
    factor differs: the message says how to change them (then run it again for the
    configs).
    """
    spec = settings.topic_spec()
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.kafka_bootstrap, request_timeout_ms=10_000
    )
    await admin.start()
    try:
        if spec.name not in set(await admin.list_topics()):
            raise CommandError(
                f"topic {spec.name!r} does not exist; the services create it as configured"
            )
        differences = await topic_differences(admin, spec)
        structural = [d for d in differences if d.structural]
        if structural:
            brokers = sorted(b["node_id"] for b in (await admin.describe_cluster())["brokers"])
            replicas = await topic_replicas(admin, spec.name)
            advice = [_advice(d, spec, replicas, brokers, settings) for d in structural]
            pending = [str(d) for d in differences if not d.structural]
            if pending:
                advice.append(
                    f"{spec.name}: nothing was changed; once the layout matches the settings, "
                    f"run align-topic again for the configs ({'; '.join(pending)})."
                )
            raise CommandError("\n\n".join(advice))
        configs = [d for d in differences if not d.structural]
        if configs:
            await _alter_configs(admin, spec)
            for d in configs:
                log.info(
                    "topic_config_aligned",
                    topic=spec.name,
                    setting=d.setting,
                    was=d.actual,
                    now=d.configured,
                )
                sys.stdout.write(f"{spec.name}: {d.setting} {d.actual} -> {d.configured}\n")
        if not configs:
            sys.stdout.write(f"{spec.name}: already as configured\n")
        return configs
    finally:
        await close_within("kafka_admin", admin.close())


async def _alter_configs(admin: AIOKafkaAdminClient, spec: TopicSpec) -> None:
    """Set the spec's configs, keeping every other config set on the topic.

    AlterConfigs replaces the topic's whole set of overrides (aiokafka has no incremental
    alter), so the ones set on the topic now are sent along unchanged.
    """
    current = await topic_configs(admin, spec.name)
    kept = {name: value for name, (value, own) in current.items() if own and value is not None}
    wanted = {**kept, **spec.configs()}
    resource = ConfigResource(ConfigResourceType.TOPIC, spec.name, configs=wanted)
    [response] = await admin.alter_configs([resource])
    for error_code, error_message, *_ in response.resources:
        if error_code:
            raise CommandError(f"altering {spec.name!r} failed: {error_code} {error_message}")


def _advice(
    difference: TopicDifference,
    spec: TopicSpec,
    replicas: dict[int, list[int]],
    brokers: list[int],
    settings: AggregatorSettings,
) -> str:
    if difference.setting == "partitions":
        return (
            f"{spec.name}: {difference}. The partition count cannot change in place (each "
            "article's fence depends on it): migrate to a new topic as the README describes "
            "('Why the partition count is frozen'), or set REACTIONS_PARTITIONS back."
        )
    if len(brokers) < spec.replication_factor:
        return (
            f"{spec.name}: {difference}, and the cluster has {len(brokers)} broker(s): add "
            "brokers, or set REACTIONS_REPLICATION_FACTOR to what the topic has."
        )
    plan = reassignment_plan(spec.name, replicas, brokers, spec.replication_factor)
    bootstrap = settings.kafka_bootstrap.split(",")[0]
    return (
        f"{spec.name}: {difference}. A config cannot change the replication factor; a "
        "partition reassignment does. Save this plan as reassign.json:\n\n"
        f"{orjson.dumps(plan).decode()}\n\nthen run it and check it is done:\n\n"
        f"  kafka-reassign-partitions.sh --bootstrap-server {bootstrap} "
        "--reassignment-json-file reassign.json --execute\n"
        f"  kafka-reassign-partitions.sh --bootstrap-server {bootstrap} "
        "--reassignment-json-file reassign.json --verify"
    )


def reassignment_plan(
    topic: str, replicas: dict[int, list[int]], brokers: list[int], factor: int
) -> dict[str, Any]:
    """A kafka-reassign-partitions plan giving each partition `factor` replicas.

    Each partition keeps its current replicas (its leader first) up to `factor`; more are
    taken from the brokers in turn, starting at a different broker per partition so that
    the new replicas spread evenly.
    """
    partitions = []
    for partition in sorted(replicas):
        chosen = replicas[partition][:factor]
        start = partition % len(brokers)
        for broker in brokers[start:] + brokers[:start]:
            if len(chosen) >= factor:
                break
            if broker not in chosen:
                chosen.append(broker)
        partitions.append({"topic": topic, "partition": partition, "replicas": chosen})
    return {"version": 1, "partitions": partitions}
