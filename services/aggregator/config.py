"""Aggregator settings: the only place the aggregator reads the environment."""

from __future__ import annotations

from pydantic import Field

from services.aggregator.deadletter import DEFAULT_MAX_RECORD_BYTES
from shared.settings import CommonSettings


class AggregatorSettings(CommonSettings):
    """Settings of the consumer that applies events to Redis."""

    host: str = Field("127.0.0.1", description="Interface of the aggregator's ops endpoints.")
    aggregator_port: int = Field(
        8002, ge=1, le=65535, description="Aggregator metrics and health port."
    )
    group_id: str = Field("reactions-aggregator", description="Kafka consumer group id.")
    max_batch: int = Field(
        100_000,
        ge=1,
        le=500_000,
        description="Most records applied in one batch. A batch grows past what one fetch "
        "returns only while Redis is still busy with the previous one, so under light load "
        "batches stay small; draining a backlog, bigger batches mean fewer Lua calls.",
    )
    session_timeout_ms: int = Field(
        10_000, ge=1000, le=300_000, description="Consumer group session timeout."
    )
    rebalance_timeout_ms: int = Field(
        60_000,
        ge=1000,
        le=600_000,
        description="How long a rebalance waits for members to finish their batch in flight; "
        "sized for the largest batch with a few Redis retries.",
    )
    dlq_max_record_bytes: int = Field(
        DEFAULT_MAX_RECORD_BYTES,
        ge=16 * 1024,
        le=900 * 1024,
        description="Largest dead letter (key, value and headers); a bigger one is stored "
        "truncated, with the original size and digest. Below the producer's 1 MiB requests.",
    )
    max_partition_fetch_bytes: int = Field(
        4 * 1024 * 1024,
        ge=64 * 1024,
        le=64 * 1024 * 1024,
        description="Most bytes fetched per partition per request (bigger batches drain faster).",
    )
