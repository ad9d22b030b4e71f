"""Settings every service shares. Each service's config.py extends this class and is the
only place that reads the environment (prefix REACTIONS_)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from shared.kafka import DEFAULT_MIN_COMPACTION_LAG_MS, TopicSpec
from shared.reactions import DEFAULT_TYPES, ReactionSet


class CommonSettings(BaseSettings):
    """Kafka, Redis, topic and reaction types: what all three services must agree on."""

    model_config = SettingsConfigDict(env_prefix="REACTIONS_", extra="ignore", frozen=True)

    kafka_bootstrap: str = Field(
        "localhost:9092", description="Kafka bootstrap servers, comma-separated host:port."
    )
    redis_url: str = Field("redis://localhost:6379/0", description="Redis URL.")
    redis_cluster: bool = Field(
        False, description="Treat REDIS_URL as a seed node of a Redis Cluster."
    )
    topic: str = Field("reactions", description="The reactions topic.")
    partitions: int = Field(
        12, ge=1, le=10_000, description="Partition count of the topic; frozen once created."
    )
    replication_factor: int = Field(
        1, ge=1, le=32, description="Replication factor of the topics; checked at start."
    )
    min_insync_replicas: int = Field(
        1,
        ge=1,
        le=32,
        description="The topic's min.insync.replicas: replicas that must have an acks=all "
        "write; checked at start.",
    )
    min_compaction_lag_ms: int = Field(
        DEFAULT_MIN_COMPACTION_LAG_MS,
        ge=0,
        description="The topic's min.compaction.lag.ms: longer than any consumer lag you "
        "tolerate, so the cleaner never drops a record an aggregator has not read; checked "
        "at start.",
    )
    types: Annotated[tuple[str, ...], NoDecode] = Field(
        DEFAULT_TYPES, description="Reaction type ids, comma-separated, in display order."
    )
    config_file: Path | None = Field(
        None, description="Optional YAML or JSON file with labels and emoji for the types."
    )
    log_level: str = Field("INFO", description="Log level.")

    @field_validator("types", mode="before")
    @classmethod
    def _split_types(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(t.strip() for t in value.split(",") if t.strip())
        return value

    @model_validator(mode="after")
    def _insync_within_replication(self) -> CommonSettings:
        if self.min_insync_replicas > self.replication_factor:
            raise ValueError(
                f"REACTIONS_MIN_INSYNC_REPLICAS ({self.min_insync_replicas}) exceeds "
                f"REACTIONS_REPLICATION_FACTOR ({self.replication_factor}): every acks=all "
                "write would be refused"
            )
        return self

    @property
    def dlq_topic(self) -> str:
        """The dead-letter topic beside the reactions topic."""
        return f"{self.topic}.dlq"

    def topic_spec(self) -> TopicSpec:
        """What the reactions topic must be."""
        return TopicSpec(
            self.topic,
            self.partitions,
            self.replication_factor,
            self.min_insync_replicas,
            self.min_compaction_lag_ms,
        )

    def reaction_set(self) -> ReactionSet:
        """The validated reaction types with their labels and emoji."""
        return ReactionSet.load(list(self.types), self.config_file)


class HttpServiceSettings(CommonSettings):
    """What both HTTP services (ingest and reader) add: the CORS allow-list."""

    allowed_origins: str = Field("*", description="CORS allow-list, comma-separated.")

    @property
    def origins(self) -> list[str]:
        """The CORS allow-list as a list."""
        return [o.strip() for o in self.allowed_origins.split(",") if o.strip()]
