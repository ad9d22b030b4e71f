"""The metric names of the shared contract, in one place: dashboards, alerts and README
are checked against this list, and this list against what the services really export."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final, NamedTuple


class ContractMetric(NamedTuple):
    """A metric family as the services promise to export it."""

    kind: str  # counter | gauge | histogram
    service: str  # ingest | aggregator | reader | http (every HTTP service)
    meaning: str
    labels: tuple[str, ...] = ()  # the label names of its series (histograms add `le`)


CONTRACT_METRICS: Final[dict[str, ContractMetric]] = {
    "reactions_http_requests_total": ContractMetric(
        "counter",
        "http",
        "HTTP requests answered, by route template, method and status.",
        ("route", "method", "status"),
    ),
    "reactions_http_request_duration_seconds": ContractMetric(
        "histogram",
        "http",
        "Time from request start to response start, by route template.",
        ("route",),
    ),
    "reactions_ingest_publish_seconds": ContractMetric(
        "histogram", "ingest", "Time from produce to Kafka's acknowledgement (acks=all)."
    ),
    "reactions_ingest_kafka_errors_total": ContractMetric(
        "counter",
        "ingest",
        "Kafka trouble by kind: publishes answered 503, producer recreations.",
        ("kind",),
    ),
    "reactions_ingest_rate_limited_total": ContractMetric(
        "counter", "ingest", "Writes refused with 429, by scope (ip or reader).", ("scope",)
    ),
    "reactions_ingest_rate_limit_keys": ContractMetric(
        "gauge",
        "ingest",
        "Keys the in-process rate limits hold (hit within their window), by scope.",
        ("scope",),
    ),
    "reactions_ingest_tokens_issued_total": ContractMetric(
        "counter",
        "ingest",
        "Reader tokens issued, by kind: new (a new anonymous reader) or renewal.",
        ("kind",),
    ),
    "reactions_ingest_issuance_refused_total": ContractMetric(
        "counter",
        "ingest",
        "New reader identities refused, by reason: rate_limited or limit_store_unavailable.",
        ("reason",),
    ),
    "reactions_token_rejections_total": ContractMetric(
        "counter",
        "http",
        "Requests refused with 401 for their reader token, by reason (missing, expired, ...).",
        ("reason",),
    ),
    "reactions_token_checks_total": ContractMetric(
        "counter",
        "http",
        "Reader tokens verified in full rather than found among those the process verified "
        "or signed.",
    ),
    "reactions_reader_own_reads_total": ContractMetric(
        "counter", "reader", "Own-vote reads answered (GET /v1/me/reactions, 200)."
    ),
    "reactions_ingest_events_total": ContractMetric(
        "counter",
        "ingest",
        "Events accepted (acknowledged by Kafka), by op (set or clear).",
        ("op",),
    ),
    "reactions_aggregator_events_total": ContractMetric(
        "counter",
        "aggregator",
        "Events consumed, by outcome: applied, noop, duplicate, stale, dead_lettered.",
        ("outcome",),
    ),
    "reactions_aggregator_batch_size": ContractMetric(
        "histogram", "aggregator", "Events per batch taken from Kafka."
    ),
    "reactions_aggregator_apply_seconds": ContractMetric(
        "histogram",
        "aggregator",
        "Time of a batch's dead letters, fenced Lua applies and correctives (not positions).",
    ),
    "reactions_aggregator_end_to_end_seconds": ContractMetric(
        "histogram", "aggregator", "From the event's server timestamp to applied in Redis."
    ),
    "reactions_aggregator_consumer_lag": ContractMetric(
        "gauge",
        "aggregator",
        "Records behind the log end (end offset minus position in Redis), by partition.",
        ("partition",),
    ),
    "reactions_aggregator_replays_total": ContractMetric(
        "counter", "aggregator", "Partition replays from the earliest offset started."
    ),
    "reactions_aggregator_retries_total": ContractMetric(
        "counter",
        "aggregator",
        "Steps retried after an error, by dependency (same batch, never skipped).",
        ("dependency",),
    ),
    "reactions_aggregator_dead_letter_failures_total": ContractMetric(
        "counter",
        "aggregator",
        "Invalid records the dead-letter topic refused even without their value: logged, skipped.",
    ),
    "reactions_aggregator_corrective_records_total": ContractMetric(
        "counter", "aggregator", "Corrective records appended after ignoring a stale event."
    ),
    "reactions_redis_used_memory_bytes": ContractMetric(
        "gauge", "aggregator", "Redis used_memory from INFO memory."
    ),
    "reactions_reader_cache_total": ContractMetric(
        "counter",
        "reader",
        "Tally lookups, by result (hit or miss) of the short-lived cache.",
        ("result",),
    ),
    "reactions_reader_view_rebuilding": ContractMetric(
        "gauge",
        "reader",
        "1 while the process answers 503 rebuilding (Redis lost its data, the log is replayed).",
    ),
    "reactions_reader_sse_clients": ContractMetric(
        "gauge", "reader", "Open SSE streams on this process (a page's one stream counts once)."
    ),
    "reactions_reader_sse_stream_articles": ContractMetric(
        "histogram", "reader", "Articles subscribed per opened SSE stream."
    ),
    "reactions_reader_sse_refused_total": ContractMetric(
        "counter",
        "reader",
        "SSE streams refused, by reason: max_clients (process full) or per_client.",
        ("reason",),
    ),
    "reactions_reader_sse_messages_total": ContractMetric(
        "counter", "reader", "Tally events sent on SSE streams."
    ),
    "reactions_reader_sse_coalesced_total": ContractMetric(
        "counter", "reader", "Tally updates skipped by coalescing (at most 4 a second)."
    ),
}

# Series Prometheus adds itself, and the client library's process collector.
PROMETHEUS_SERIES: Final = frozenset({"up"})
STANDARD_PREFIXES: Final = ("process_", "python_")

_SUFFIXES: Final = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
    "gauge": ("",),
    "info": ("_info",),
    "stateset": ("",),
    "gaugehistogram": ("_bucket", "_gcount", "_gsum"),
    "unknown": ("",),
}


def series_names(family: str, kind: str) -> set[str]:
    """The sample names a PromQL selector can use for one family (e.g. x_bucket for x)."""
    base = family.removesuffix("_total") if kind == "counter" else family
    return {base + suffix for suffix in _SUFFIXES[kind]}


def contract_series() -> set[str]:
    """Every sample name the contract's families produce."""
    names: set[str] = set()
    for family, metric in CONTRACT_METRICS.items():
        names |= series_names(family, metric.kind)
    return names


def exposition_series(texts: Iterable[str]) -> tuple[set[str], set[str]]:
    """(family names as declared, sample names selectable) from /metrics texts.

    A labelled family without children yet is declared (HELP/TYPE) but has no samples;
    it counts as exported: its series appear with the first event.
    """
    from prometheus_client.parser import text_string_to_metric_families

    families: set[str] = set()
    samples: set[str] = set()
    for text in texts:
        for family in text_string_to_metric_families(text):
            declared = family.name + "_total" if family.type == "counter" else family.name
            families.add(declared)
            samples |= series_names(declared, family.type)
            samples |= {sample.name for sample in family.samples}
    return families, samples


_STRIPPED: Final = (
    re.compile(r'"(?:\\.|[^"\\])*"'),  # string literals
    re.compile(r"\{[^}]*\}"),  # label matchers
    re.compile(r"\[[^\]]*\]"),  # ranges and subqueries
    re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)"),
    re.compile(r"(?<![\w:])\d[\w.+-]*"),  # numbers and durations
)
_KEYWORDS: Final = frozenset(
    {"and", "or", "unless", "offset", "bool", "by", "without", "on", "ignoring", "inf", "nan"}
)


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (functions and keywords left out)."""
    for pattern in _STRIPPED:
        expr = pattern.sub(" ", expr)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", expr):
        if expr[match.end() :].lstrip().startswith("("):
            continue  # a function or an aggregation
        if match.group().lower() not in _KEYWORDS:
            names.add(match.group())
    return names
