"""Topic management and client construction shared by the services."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaError,
    TopicAlreadyExistsError,
    UnknownTopicOrPartitionError,
)

from shared.logs import get_logger
from shared.shutdown import close_within

if TYPE_CHECKING:
    from shared.settings import CommonSettings

log = get_logger(__name__)

# DescribeConfigs' config_source of a value set on the topic itself (not a broker default).
TOPIC_CONFIG_SOURCE: Final = 1
# Longer than any consumer lag to tolerate: a week.
DEFAULT_MIN_COMPACTION_LAG_MS: Final = 7 * 24 * 3600 * 1000
# How soon the topic check asks a broker that is not ready yet again.
TOPIC_RETRY_S: Final = 0.5
# How often a service starting before Kafka (or during its restart) tries to reach it again.
CONNECT_RETRY_S: Final = 1.0


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """What the reactions topic must be: the services create it so, and refuse it otherwise."""

    name: str
    partitions: int
    replication_factor: int = 1
    min_insync_replicas: int = 1
    min_compaction_lag_ms: int = DEFAULT_MIN_COMPACTION_LAG_MS

    def configs(self) -> dict[str, str]:
        """The topic-level configs the services set at creation and check at start."""
        return {
            "cleanup.policy": "compact",
            # Without a lag the cleaner may drop the newer record of a key before a lagging
            # aggregator has read it, keeping a stale one: last writer wins would be lost.
            "min.compaction.lag.ms": str(self.min_compaction_lag_ms),
            "min.insync.replicas": str(self.min_insync_replicas),
        }


# The setting behind each checked property, for messages that say what to change.
SETTING_OF: Final = {
    "partitions": "REACTIONS_PARTITIONS",
    "replication factor": "REACTIONS_REPLICATION_FACTOR",
    "cleanup.policy": "(always compact)",
    "min.compaction.lag.ms": "REACTIONS_MIN_COMPACTION_LAG_MS",
    "min.insync.replicas": "REACTIONS_MIN_INSYNC_REPLICAS",
}


@dataclass(frozen=True, slots=True)
class TopicDifference:
    """One property of an existing topic that is not what the settings say."""

    setting: str  # "partitions", "replication factor" or a topic config name
    actual: str
    configured: str

    def __str__(self) -> str:
        return (
            f"{self.setting} is {self.actual} but {self.configured} is configured "
            f"({SETTING_OF[self.setting]})"
        )

    @property
    def structural(self) -> bool:
        """True for what no config change can fix: the partition count, the replication."""
        return self.setting in ("partitions", "replication factor")


class TopicMismatch(RuntimeError):
    """The topic exists with other settings than configured: fatal, the services refuse it."""

    def __init__(self, topic: str, differences: list[TopicDifference]) -> None:
        self.topic = topic
        self.differences = differences
        super().__init__(self.explain())

    def fields(self) -> dict[str, object]:
        """The refusal as log fields: the reason, and each difference with both values."""
        return {
            "topic": self.topic,
            "reason": str(self),
            "differences": [
                {"setting": d.setting, "actual": d.actual, "configured": d.configured}
                for d in self.differences
            ],
        }

    def explain(self) -> str:
        """Every difference, naming both values, and what to do."""
        listed = "; ".join(str(d) for d in self.differences)
        return (
            f"topic {self.topic!r}: {listed}; align it with `python -m services.aggregator "
            "align-topic` (see README, 'Topic settings')"
        )


class PartitionCountMismatch(TopicMismatch):
    """The topic exists with a different partition count than configured.

    Fatal: every article's partition (and so its offset fence) depends on the count.
    """

    def explain(self) -> str:
        count = next(d for d in self.differences if d.setting == "partitions")
        others = "".join(f"; {d}" for d in self.differences if d is not count)
        return (
            f"topic {self.topic!r} has {count.actual} partitions but {count.configured} are "
            "configured; the partition count is frozen because each article's offset fence "
            f"depends on it (see README, 'Scaling out', to migrate to a new topic){others}"
        )


class KafkaUnreachable(Exception):
    """No broker answered within the start-up wait (REACTIONS_KAFKA_STARTUP_TIMEOUT_S)."""

    def __init__(self, bootstrap: str, waited_s: float, error: BaseException) -> None:
        super().__init__(f"Kafka at {bootstrap} did not answer within {waited_s:.0f} s")
        self.bootstrap = bootstrap
        self.waited_s = waited_s
        self.error = error

    def fields(self) -> dict[str, Any]:
        """The log line's fields."""
        return {
            "bootstrap": self.bootstrap,
            "waited_s": round(self.waited_s, 1),
            "error": repr(self.error),
            "hint": "start Kafka, or raise REACTIONS_KAFKA_STARTUP_TIMEOUT_S",
        }


async def ensure_topics(
    bootstrap: str,
    spec: TopicSpec,
    *,
    dlq_topic: str | None = None,
    timeout_s: float = 30.0,
) -> None:
    """Create the compacted topic (and the DLQ) if missing; refuse one set up otherwise.
    All within `timeout_s`, waiting for a broker to answer first (KafkaUnreachable when
    none does): each step gets what the steps before it left."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    admin = await _started_admin(bootstrap, deadline)
    try:
        wanted = [
            NewTopic(
                spec.name,
                num_partitions=spec.partitions,
                replication_factor=spec.replication_factor,
                topic_configs=spec.configs(),
            )
        ]
        if dlq_topic:
            wanted.append(
                NewTopic(
                    dlq_topic,
                    num_partitions=1,
                    replication_factor=spec.replication_factor,
                    topic_configs={
                        "cleanup.policy": "delete",
                        "min.insync.replicas": str(spec.min_insync_replicas),
                    },
                )
            )
        existing = await _topic_names(admin, deadline)
        missing = [t for t in wanted if t.name not in existing]
        if missing:
            try:
                await admin.create_topics(missing)
                log.info("topics_created", topics=[t.name for t in missing])
            except TopicAlreadyExistsError:
                pass  # another service instance created it first
        differences = await topic_differences(admin, spec, max(0.0, deadline - loop.time()))
    finally:
        await close_within("kafka_admin", admin.close())
    if any(d.setting == "partitions" for d in differences):
        raise PartitionCountMismatch(spec.name, differences)
    if differences:
        raise TopicMismatch(spec.name, differences)


async def ensure_configured_topics(settings: CommonSettings, *, with_dlq: bool = True) -> None:
    """`ensure_topics` as the settings name them: the reactions topic and (with `with_dlq`)
    its dead-letter topic, within REACTIONS_KAFKA_STARTUP_TIMEOUT_S."""
    await ensure_topics(
        settings.kafka_bootstrap,
        settings.topic_spec(),
        dlq_topic=settings.dlq_topic if with_dlq else None,
        timeout_s=settings.kafka_startup_timeout_s,
    )


async def _started_admin(bootstrap: str, deadline: float) -> AIOKafkaAdminClient:
    """An admin client connected to the cluster; while no broker answers (a service started
    before Kafka, or during its restart), tried again every second until `deadline`."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    while True:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
        try:
            await asyncio.wait_for(admin.start(), max(0.0, deadline - loop.time()))
        except (KafkaConnectionError, TimeoutError) as exc:
            await close_within("kafka_admin", admin.close())
            if loop.time() + CONNECT_RETRY_S > deadline:
                raise KafkaUnreachable(bootstrap, loop.time() - started, exc) from None
            log.warning("kafka_not_reachable_yet", bootstrap=bootstrap, error=repr(exc))
            await asyncio.sleep(CONNECT_RETRY_S)
        else:
            return admin


async def _topic_names(admin: AIOKafkaAdminClient, deadline: float) -> set[str]:
    """The cluster's topics, asked again while the broker is not ready yet (a broker just
    started or resumed answers the connection before it serves metadata), until `deadline`."""
    loop = asyncio.get_running_loop()
    while True:
        try:
            return set(await admin.list_topics())
        except KafkaError as exc:
            if not exc.retriable or loop.time() + TOPIC_RETRY_S > deadline:
                raise
            log.info("kafka_not_ready", error=repr(exc))
            await asyncio.sleep(TOPIC_RETRY_S)


async def topic_differences(
    admin: AIOKafkaAdminClient, spec: TopicSpec, timeout_s: float = 30.0
) -> list[TopicDifference]:
    """How the existing topic differs from `spec`: partitions, replication, configs, all
    within `timeout_s`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    replicas = await topic_replicas(admin, spec.name, timeout_s)
    differences = []
    if len(replicas) != spec.partitions:
        differences.append(TopicDifference("partitions", str(len(replicas)), str(spec.partitions)))
    # The least replicated partition is what an acks=all write can count on.
    replication = min(len(r) for r in replicas.values())
    if replication != spec.replication_factor:
        differences.append(
            TopicDifference("replication factor", str(replication), str(spec.replication_factor))
        )
    actual = await topic_configs(admin, spec.name, max(0.0, deadline - loop.time()))
    for name, configured in spec.configs().items():
        value = actual.get(name, (None, None))[0]
        if value != configured:
            differences.append(TopicDifference(name, str(value), configured))
    return differences


async def topic_replicas(
    admin: AIOKafkaAdminClient, topic: str, timeout_s: float = 30.0
) -> dict[int, list[int]]:
    """partition -> its replicas (broker ids, preferred leader first), once metadata has them."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        described: list[dict[str, Any]] = await admin.describe_topics([topic])
        info = described[0] if described else {}
        if info.get("error_code", 0) == 0 and info.get("partitions"):
            return {p["partition"]: list(p["replicas"]) for p in info["partitions"]}
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"topic {topic!r} has no metadata after {timeout_s}s")
        await asyncio.sleep(0.1)


async def topic_configs(
    admin: AIOKafkaAdminClient, topic: str, timeout_s: float = 30.0
) -> dict[str, tuple[str | None, bool]]:
    """Every config of the topic in effect: name -> (value, set on the topic itself)."""
    resource = ConfigResource(ConfigResourceType.TOPIC, topic)
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        [response] = await admin.describe_configs([resource])
        # resources: (error_code, error_message, type, name, [(name, value, read_only,
        # config_source, is_sensitive, synonyms), ...])
        [(error_code, error_message, _, _, entries)] = response.resources
        if not error_code:
            return {entry[0]: (entry[1], entry[3] == TOPIC_CONFIG_SOURCE) for entry in entries}
        # A topic just created (by us or another instance) reaches each broker's metadata a
        # moment later, and the broker asked may not know it yet.
        if (
            error_code != UnknownTopicOrPartitionError.errno
            or asyncio.get_running_loop().time() > deadline
        ):
            raise RuntimeError(f"describing topic {topic!r} failed: {error_code} {error_message}")
        await asyncio.sleep(0.1)


def new_producer(bootstrap: str, *, linger_ms: int = 2, request_timeout_ms: int = 2_000) -> Any:
    """An idempotent, acks=all producer (aiokafka's default has idempotence off)."""
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        enable_idempotence=True,
        acks="all",
        linger_ms=linger_ms,
        request_timeout_ms=request_timeout_ms,
        retry_backoff_ms=50,
        max_batch_size=64 * 1024,
    )
