"""The aggregator's Prometheus metrics (module-level, served on its ops port)."""

from __future__ import annotations

from typing import Final

from prometheus_client import Counter, Gauge, Histogram

EVENTS: Final = Counter(
    "reactions_aggregator_events_total",
    "Records consumed, by outcome: applied (counts changed), noop (no count changed), "
    "duplicate (at or below the article's fence), stale (older client_ts), dead_lettered.",
    ["outcome"],
)
# Every outcome exists at zero from the start, so increase() sees the first dead letter.
for _outcome in ("applied", "noop", "duplicate", "stale", "dead_lettered"):
    EVENTS.labels(_outcome)
BATCH_SIZE: Final = Histogram(
    "reactions_aggregator_batch_size",
    "Records per batch taken from Kafka.",
    buckets=(1, 10, 50, 100, 500, 1000, 2500, 5000, 10_000, 25_000, 50_000),
)
APPLY_SECONDS: Final = Histogram(
    "reactions_aggregator_apply_seconds",
    "Time of one batch's apply step: its dead letters, its fenced Lua applies and its "
    "corrective records, retries included. Not decoding, nor the positions, trending and "
    "notification written after it.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
END_TO_END_SECONDS: Final = Histogram(
    "reactions_aggregator_end_to_end_seconds",
    "Event ts (ingest's clock) to applied in Redis; sampled: the oldest event of each "
    "article in each batch.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
CONSUMER_LAG: Final = Gauge(
    "reactions_aggregator_consumer_lag",
    "Records behind the partition's log end: after each applied batch, and every 5 s from "
    "Kafka's end offsets (so it grows while the member is stalled).",
    ["partition"],
)
REPLAYS: Final = Counter(
    "reactions_aggregator_replays_total",
    "Partitions replayed from the earliest offset because Redis lost data: the resume "
    "position was missing while Kafka had a committed offset for the group, or a running "
    "aggregator found Redis emptied or gone back in time.",
)
RETRIES: Final = Counter(
    "reactions_aggregator_retries_total",
    "Steps retried after an error, by the dependency that failed (redis or kafka); the same "
    "batch is retried, never skipped.",
    ["dependency"],
)
for _dependency in ("redis", "kafka"):
    RETRIES.labels(_dependency)
DEAD_LETTER_FAILURES: Final = Counter(
    "reactions_aggregator_dead_letter_failures_total",
    "Invalid records the dead-letter topic refused even as headers only: logged with topic, "
    "partition and offset, and skipped (never applied, so no count is affected).",
)
CORRECTIVES: Final = Counter(
    "reactions_aggregator_corrective_records_total",
    "Corrective records appended to the topic to restate a reader's state after a stale event.",
)
REDIS_USED_MEMORY: Final = Gauge(
    "reactions_redis_used_memory_bytes",
    "Redis used_memory from INFO memory, sampled every few seconds.",
)
