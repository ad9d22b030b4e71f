"""The Grafana dashboard and the alert rules use only metrics the services export: checked
against the contract list and against the /metrics of the three running services."""

from __future__ import annotations

import re
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from deploy.local.process import ROOT
from deploy.local.services import SERVICE_NAMES
from tests.deploy.contract import (
    CONTRACT_METRICS,
    PROMETHEUS_SERIES,
    STANDARD_PREFIXES,
    contract_series,
    exposition_series,
    metric_names,
)
from tests.deploy.files import GRAFANA_DIR, alert_rules, dashboard_exprs, load_yaml
from tests.deploy.running_stack import RunningStack

# What the dashboard must show (issue 8): one selected series for each view.
REQUIRED_VIEWS = {
    "ingest rate, errors": "reactions_http_requests_total",
    "ingest latency": "reactions_http_request_duration_seconds_bucket",
    "429s": "reactions_ingest_rate_limited_total",
    "aggregator events/s by outcome (and DLQ rate)": "reactions_aggregator_events_total",
    "consumer lag": "reactions_aggregator_consumer_lag",
    "end-to-end latency p99": "reactions_aggregator_end_to_end_seconds_bucket",
    "SSE clients": "reactions_reader_sse_clients",
    "Redis memory": "reactions_redis_used_memory_bytes",
    "reader tokens issued": "reactions_ingest_tokens_issued_total",
    "new identities refused": "reactions_ingest_issuance_refused_total",
    "tokens refused (401)": "reactions_token_rejections_total",
    "token checks per authenticated call": "reactions_token_checks_total",
    "own-vote reads": "reactions_reader_own_reads_total",
}


def used_names(dashboard: dict[str, Any]) -> set[str]:
    """Every metric name selected by a dashboard panel or an alert rule."""
    exprs = dashboard_exprs(dashboard) + [rule["expr"] for rule in alert_rules()]
    return {name for expr in exprs for name in metric_names(expr)}


def test_metric_names_are_found_in_promql() -> None:
    expr = (
        'sum by (le) (rate(a_bucket{job="x", s=~"5.."}[$__rate_interval])) / on(job) b '
        "> 1e3 and deriv(c[10m:1m]) > 0.5 unless up offset 5m"
    )
    assert metric_names(expr) == {"a_bucket", "b", "c", "up"}


def test_declared_families_without_samples_count_as_exported(dashboard: dict[str, Any]) -> None:
    """A registry declaring the contract (labelled families with no children yet, as in an
    idle service) satisfies the scrape checks below: they fail only for undeclared names."""
    registry = CollectorRegistry()
    kinds = {"counter": Counter, "gauge": Gauge, "histogram": Histogram}
    for name, metric in CONTRACT_METRICS.items():
        kinds[metric.kind](name, metric.meaning, ["label"], registry=registry)
    families, samples = exposition_series([generate_latest(registry).decode()])
    assert families == set(CONTRACT_METRICS)
    contract_only = {n for n in used_names(dashboard) if not n.startswith(STANDARD_PREFIXES)}
    assert contract_only - samples == PROMETHEUS_SERIES


def test_the_dashboard_shows_every_required_view(dashboard: dict[str, Any]) -> None:
    names = {name for expr in dashboard_exprs(dashboard) for name in metric_names(expr)}
    missing = {view: name for view, name in REQUIRED_VIEWS.items() if name not in names}
    assert not missing, missing
    exprs = " ".join(dashboard_exprs(dashboard))
    assert 'outcome="dead_lettered"' in exprs
    assert 'status="429"' in exprs
    assert "histogram_quantile(0.99, sum by (le) (rate(reactions_aggregator_end_to_end" in exprs


def test_every_panel_uses_the_provisioned_datasource(dashboard: dict[str, Any]) -> None:
    provisioned = load_yaml(GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yml")
    (source,) = provisioned["datasources"]
    assert source["type"] == "prometheus"
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": source["uid"]}, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == source["uid"], panel["title"]
    assert dashboard["uid"] and dashboard["title"] == "Reactions"
    assert len({panel["id"] for panel in dashboard["panels"]}) == len(dashboard["panels"])


def test_dashboard_and_alerts_use_only_contract_metrics(dashboard: dict[str, Any]) -> None:
    allowed = contract_series() | PROMETHEUS_SERIES
    unknown = {
        name
        for name in used_names(dashboard)
        if name not in allowed and not name.startswith(STANDARD_PREFIXES)
    }
    assert not unknown, f"not in tests/deploy/contract.py: {sorted(unknown)}"


def test_the_readme_explains_every_contract_metric() -> None:
    operating = (ROOT / "README.md").read_text().split("## Operating", 1)
    assert len(operating) == 2, "README.md has no Operating section"
    documented = set(re.findall(r"`(reactions_[a-z_]+)`", operating[1]))
    assert set(CONTRACT_METRICS) <= documented, sorted(set(CONTRACT_METRICS) - documented)


def test_dashboard_and_alert_metrics_are_exported(
    running_stack: RunningStack, dashboard: dict[str, Any]
) -> None:
    """Scrapes the three running services: a name no service exports fails, listed."""
    _, exported = exposition_series(running_stack.metrics_text(n) for n in SERVICE_NAMES)
    missing = sorted(used_names(dashboard) - exported - PROMETHEUS_SERIES)
    assert not missing, f"used in the dashboard or alerts but exported by no service: {missing}"


def test_every_contract_metric_is_exported(running_stack: RunningStack) -> None:
    """Scrapes the three running services: every family of the contract is declared."""
    families, _ = exposition_series(running_stack.metrics_text(n) for n in SERVICE_NAMES)
    missing = sorted(set(CONTRACT_METRICS) - families)
    assert not missing, f"contract metrics exported by no service: {missing}"


def test_exported_series_carry_the_contract_labels(running_stack: RunningStack) -> None:
    """Every sample of a contract family has exactly the labels the contract names."""
    wrong: dict[str, list[str]] = {}
    for name in SERVICE_NAMES:
        for family in text_string_to_metric_families(running_stack.metrics_text(name)):
            declared = family.name + "_total" if family.type == "counter" else family.name
            metric = CONTRACT_METRICS.get(declared)
            if metric is None:
                continue
            for sample in family.samples:
                labels = set(sample.labels) - {"le"}
                if labels != set(metric.labels):
                    wrong[sample.name] = sorted(labels)
    assert not wrong, f"labels other than the contract's: {wrong}"


def label_values(
    running_stack: RunningStack, counter: str, label: str, service: str = "aggregator"
) -> set[str | None]:
    """The values of `label` on a service's series of `counter` (a `_total` name)."""
    families = text_string_to_metric_families(running_stack.metrics_text(service))
    return {
        sample.labels.get(label)
        for family in families
        if family.name == counter.removesuffix("_total")
        for sample in family.samples
        if sample.name == counter
    }


def test_alerted_outcome_series_exist_before_their_first_event(
    running_stack: RunningStack,
) -> None:
    """increase() cannot see a counter's first event when its series is born at 1, so the
    dead-letter alert needs every outcome's series created at 0 when the aggregator starts."""
    outcomes = label_values(running_stack, "reactions_aggregator_events_total", "outcome")
    expected = {"applied", "noop", "duplicate", "stale", "dead_lettered"}
    assert expected <= outcomes, f"no series yet for outcomes: {sorted(expected - outcomes)}"


def test_retry_series_exist_before_the_first_retry(running_stack: RunningStack) -> None:
    """The same for the retries the dashboard shows by dependency."""
    dependencies = label_values(running_stack, "reactions_aggregator_retries_total", "dependency")
    assert dependencies == {"redis", "kafka"}


def test_identity_series_exist_before_their_first_event(running_stack: RunningStack) -> None:
    """The identity alerts use increase() and rate() on labelled counters: every reason's
    series exists at 0 from the start, on ingest and on the reader."""
    refused = "reactions_ingest_issuance_refused_total"
    assert label_values(running_stack, refused, "reason", "ingest") == {
        "rate_limited",
        "limit_store_unavailable",
    }
    issued = label_values(running_stack, "reactions_ingest_tokens_issued_total", "kind", "ingest")
    assert issued == {"new", "renewal"}
    for service in ("ingest", "reader"):
        reasons = label_values(running_stack, "reactions_token_rejections_total", "reason", service)
        assert {"missing", "expired", "bad_signature", "malformed"} <= reasons, service
