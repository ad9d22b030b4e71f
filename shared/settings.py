"""Settings every service shares. Each service's config.py extends this class and is the
only place that reads the environment (prefix REACTIONS_)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Literal, Self, TypeVar

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from shared.clients import IpNetwork, parse_networks
from shared.events import DEFAULT_CLIENT_CLOCK_SKEW_MS
from shared.identity import SiteKeys, Verifier
from shared.jwks import (
    ASYMMETRIC_ALGORITHMS,
    HMAC_ALGORITHMS,
    KeyFileError,
    VerificationKey,
    load_jwks,
    load_secret,
)
from shared.kafka import DEFAULT_MIN_COMPACTION_LAG_MS, TopicSpec
from shared.logs import configure_logging, get_logger
from shared.reactions import DEFAULT_TYPES, ReactionSet

S = TypeVar("S", bound="CommonSettings")


class CommonSettings(BaseSettings):
    """Kafka, Redis, topic and reaction types: what all three services must agree on."""

    model_config = SettingsConfigDict(env_prefix="REACTIONS_", extra="ignore", frozen=True)

    kafka_bootstrap: str = Field(
        "localhost:9092", description="Kafka bootstrap servers, comma-separated host:port."
    )
    kafka_startup_timeout_s: float = Field(
        30.0,
        gt=0,
        le=3600,
        description="How long ingest and the aggregator wait at start for Kafka to answer "
        "and the topic check to end; then they exit with status 1 (kafka_unreachable).",
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
    client_clock_skew_ms: int = Field(
        DEFAULT_CLIENT_CLOCK_SKEW_MS,
        ge=0,
        le=86_400_000,
        description="How far ahead of the server's clock a client_ts may be; one further "
        "ahead counts as this bound (ingest stores it so, the aggregator compares it so).",
    )
    log_level: str = Field("INFO", description="Log level.")
    env: Literal["development", "production"] = Field(
        "development", description="production refuses to start with unsafe settings."
    )

    @field_validator("types", mode="before")
    @classmethod
    def _split_types(cls, value: object) -> object:
        return _split_commas(value)

    @model_validator(mode="after")
    def _reaction_set_loads(self) -> Self:
        # A bad REACTIONS_CONFIG_FILE is refused with the other settings, at start.
        self.reaction_set()
        return self

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


def empty_path_is_unset(value: object) -> object:
    """An empty file (or secret) setting means "not set", not the current directory."""
    return None if value == "" else value


def _split_commas(value: object) -> object:
    if isinstance(value, str):
        return tuple(item.strip() for item in value.split(",") if item.strip())
    return value


class HttpServiceSettings(CommonSettings):
    """What both HTTP services (ingest and reader) add: CORS and reader-token verification."""

    allowed_origins: str = Field("*", description="CORS allow-list, comma-separated.")
    trusted_proxies: Annotated[tuple[IpNetwork, ...], NoDecode] = Field(
        (),
        description="CIDRs of the proxies (the edge, a load balancer) whose X-Forwarded-For "
        "is believed, comma-separated.",
    )
    token_public_keys_file: Path | None = Field(
        None, description="JWKS (JSON) of the public keys that verify reader tokens."
    )
    token_issuer: str = Field("reactions", min_length=1, description="iss of reader tokens.")
    token_audience: str = Field("reactions", min_length=1, description="aud of reader tokens.")
    site_jwt_secret_file: Path | None = Field(
        None, description="File holding the site's HMAC secret for its logged-in readers."
    )
    site_jwks_file: Path | None = Field(
        None, description="JWKS (JSON) of the site's public keys for its logged-in readers."
    )
    site_jwt_algorithms: Annotated[tuple[str, ...], NoDecode] = Field(
        (),
        description="Algorithms the site's tokens may use; default HS256 with a secret, "
        "RS256,ES256,EdDSA with a JWKS.",
    )
    site_jwt_issuer: str | None = Field(None, description="iss of the site's tokens.")
    site_jwt_audience: str | None = Field(None, description="aud of the site's tokens.")

    @field_validator(
        "token_public_keys_file", "site_jwt_secret_file", "site_jwks_file", mode="before"
    )
    @classmethod
    def _empty_path_is_unset(cls, value: object) -> object:
        return empty_path_is_unset(value)

    @field_validator("site_jwt_algorithms", mode="before")
    @classmethod
    def _split_algorithms(cls, value: object) -> object:
        return _split_commas(value)

    @field_validator("token_public_keys_file")
    @classmethod
    def _public_keys_load(cls, value: Path | None) -> Path | None:
        if value is not None:
            load_jwks(value, reader_token_keys=True)  # KeyFileError is a ValueError
        return value

    @model_validator(mode="after")
    def _site_tokens_verifiable(self) -> Self:
        self.site_keys()
        return self

    @model_validator(mode="after")
    def _production_is_safe(self) -> Self:
        if self.env != "production":
            return self
        if "*" in self.origins:
            raise ValueError(
                "REACTIONS_ALLOWED_ORIGINS: '*' is refused in production; list the sites' origins"
            )
        if self.token_public_keys_file is None:
            raise ValueError(
                "REACTIONS_TOKEN_PUBLIC_KEYS_FILE: production needs the reader-token public keys"
            )
        return self

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _split_proxies(cls, value: object) -> object:
        return parse_networks(value)

    @property
    def origins(self) -> list[str]:
        """The CORS allow-list as a list."""
        return [o.strip() for o in self.allowed_origins.split(",") if o.strip()]

    def reader_token_keys(self) -> dict[str | None, VerificationKey]:
        """The public keys of reader tokens by kid (none when no file is configured)."""
        if self.token_public_keys_file is None:
            return {}
        return load_jwks(self.token_public_keys_file, reader_token_keys=True)

    def site_keys(self) -> SiteKeys | None:
        """How the site's own tokens are verified, or None when no site is configured."""
        secret_file, jwks_file = self.site_jwt_secret_file, self.site_jwks_file
        if secret_file is None and jwks_file is None:
            return None
        if secret_file is not None and jwks_file is not None:
            raise ValueError(
                "REACTIONS_SITE_JWT_SECRET_FILE and REACTIONS_SITE_JWKS_FILE: set one, not both"
            )
        if not self.site_jwt_issuer or not self.site_jwt_audience:
            raise ValueError(
                "REACTIONS_SITE_JWT_ISSUER and REACTIONS_SITE_JWT_AUDIENCE are required with "
                "site tokens"
            )
        if self.site_jwt_issuer == self.token_issuer:
            raise ValueError("REACTIONS_SITE_JWT_ISSUER must differ from REACTIONS_TOKEN_ISSUER")
        family = HMAC_ALGORITHMS if secret_file is not None else ASYMMETRIC_ALGORITHMS
        default = ("HS256",) if secret_file is not None else ("RS256", "ES256", "EdDSA")
        algorithms = frozenset(self.site_jwt_algorithms or default)
        if not algorithms <= family:
            raise ValueError(
                f"REACTIONS_SITE_JWT_ALGORITHMS: {', '.join(sorted(algorithms - family))} cannot "
                f"be used with {'a secret' if secret_file else 'a JWKS'}; "
                f"choose from {', '.join(sorted(family))}"
            )
        issuer, audience = self.site_jwt_issuer, self.site_jwt_audience
        try:
            if secret_file is not None:
                return SiteKeys(issuer, audience, algorithms, secret=load_secret(secret_file))
            assert jwks_file is not None
            keys = load_jwks(jwks_file, reader_token_keys=False)
        except KeyFileError as exc:
            setting = "SITE_JWT_SECRET_FILE" if secret_file else "SITE_JWKS_FILE"
            raise ValueError(f"REACTIONS_{setting}: {exc}") from None
        return SiteKeys(issuer, audience, algorithms, keys=keys)

    def verifier(
        self,
        extra_keys: Mapping[str | None, VerificationKey] | None = None,
        on_check: Callable[[], object] | None = None,
    ) -> Verifier:
        """The token verifier these settings describe (plus `extra_keys`, ingest's own),
        calling `on_check` for each token it verifies in full."""
        return Verifier(
            {**self.reader_token_keys(), **(extra_keys or {})},
            issuer=self.token_issuer,
            audience=self.token_audience,
            site=self.site_keys(),
            on_check=on_check,
        )


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
