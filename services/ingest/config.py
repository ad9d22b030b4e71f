"""Ingest settings: the only place the ingest service reads the environment."""

from __future__ import annotations

import ipaddress
from typing import Annotated

from limits import parse
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import NoDecode

from shared.settings import HttpServiceSettings

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class IngestSettings(HttpServiceSettings):
    """Settings of the write path."""

    host: str = Field("127.0.0.1", description="Interface the ingest service binds.")
    ingest_port: int = Field(8000, ge=1, le=65535, description="Ingest HTTP port.")
    workers: int = Field(1, ge=1, le=64, description="Ingest uvicorn worker processes.")
    publish_timeout_s: float = Field(
        2.0, gt=0, le=30, description="Longest wait for Kafka's ack before answering 503."
    )
    linger_ms: int = Field(2, ge=0, le=100, description="Producer linger for batching.")
    rate_limit_ip: str = Field(
        "600/minute", description="Writes allowed per client IP (limits notation)."
    )
    rate_limit_reader: str = Field(
        "60/minute", description="Writes allowed per reader id (limits notation)."
    )
    rate_limit_storage: str = Field(
        "memory://", description="Rate-limit counters: memory:// (per process) or a redis URL."
    )
    trusted_proxies: Annotated[tuple[IpNetwork, ...], NoDecode] = Field(
        (), description="CIDRs whose X-Forwarded-For is believed, comma-separated."
    )
    ip_hash_salt: SecretStr | None = Field(
        None, description="Salt for hashing client IPs (rate-limit keys, logs); random if unset."
    )

    @field_validator("rate_limit_ip", "rate_limit_reader")
    @classmethod
    def _valid_limit(cls, value: str) -> str:
        parse(value)  # raises ValueError with the offending string
        return value

    @field_validator("rate_limit_storage")
    @classmethod
    def _valid_storage(cls, value: str) -> str:
        if value.split("://", 1)[0] not in ("memory", "redis", "rediss", "redis+unix"):
            raise ValueError("must be memory:// or a redis:// URL")
        return value

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _split_proxies(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(
                ipaddress.ip_network(cidr.strip(), strict=False)
                for cidr in value.split(",")
                if cidr.strip()
            )
        return value
