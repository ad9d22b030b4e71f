"""Settings every service shares. Each service's config.py extends this class and is the
only place that reads the environment (prefix REACTIONS_)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Self, TypeVar

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from shared.logs import configure_logging, get_logger
from shared.reactions import DEFAULT_TYPES, ReactionSet

S = TypeVar("S", bound="CommonSettings")


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
    replication_factor: int = Field(1, ge=1, le=32, description="Replication of new topics.")
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
    def _reaction_set_loads(self) -> Self:
        # A bad REACTIONS_CONFIG_FILE is refused with the other settings, at start.
        self.reaction_set()
        return self

    @property
    def dlq_topic(self) -> str:
        """The dead-letter topic beside the reactions topic."""
        return f"{self.topic}.dlq"

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


def load_settings(settings_class: type[S], service: str) -> S:
    """The service's settings from the environment; an invalid one ends the process with
    status 2 and a `refusing_to_start` line naming each bad setting."""
    try:
        return settings_class()
    except ValidationError as exc:
        configure_logging(service)
        problems = [
            f"REACTIONS_{'_'.join(str(p) for p in error['loc']).upper()}: {error['msg']}"
            if error["loc"]
            else error["msg"]
            for error in exc.errors()
        ]
        get_logger(__name__).error("refusing_to_start", reason="; ".join(problems))
        sys.exit(2)
