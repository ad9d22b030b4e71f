"""Ingest settings: the only place the ingest service reads the environment."""

from __future__ import annotations

from pydantic import Field

from shared.settings import CommonSettings


class IngestSettings(CommonSettings):
    """Settings of the write path."""

    host: str = Field("127.0.0.1", description="Interface the ingest service binds.")
    ingest_port: int = Field(8000, ge=1, le=65535, description="Ingest HTTP port.")
    workers: int = Field(1, ge=1, le=64, description="Ingest uvicorn worker processes.")
    publish_timeout_s: float = Field(
        2.0, gt=0, le=30, description="Longest wait for Kafka's ack before answering 503."
    )
    linger_ms: int = Field(2, ge=0, le=100, description="Producer linger for batching.")
    allowed_origins: str = Field("*", description="CORS allow-list, comma-separated.")
