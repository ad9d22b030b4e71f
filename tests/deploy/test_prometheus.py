"""Prometheus, for real: promtool on the config, the rules and each service's /metrics, and
Debian's prometheus scraping the running services with deploy/prometheus/prometheus.yml."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from deploy.local.process import Process, free_port
from deploy.local.services import SERVICE_NAMES
from tests.deploy.files import GRAFANA_DIR, PROMETHEUS_DIR, alert_rules, load_yaml
from tests.deploy.running_stack import RunningStack
from tests.support import wait_until

README = PROMETHEUS_DIR.parent.parent / "README.md"


def installed(tool: str) -> str:
    """The path of a tool from Debian's prometheus package (`make setup` installs it)."""
    path = shutil.which(tool)
    assert path, f"{tool} is not installed: run `make setup` (Debian package prometheus)"
    return path


def promtool(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run promtool and return its result (the caller asserts on it)."""
    return subprocess.run(
        [installed("promtool"), *args], input=stdin, capture_output=True, text=True, timeout=120
    )


def test_promtool_accepts_the_config_and_its_rule_files() -> None:
    result = promtool("check", "config", str(PROMETHEUS_DIR / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 rule files found" in result.stdout


def test_promtool_accepts_the_alert_rules() -> None:
    result = promtool("check", "rules", str(PROMETHEUS_DIR / "alerts.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_unit_tests_pass() -> None:
    result = promtool("test", "rules", str(PROMETHEUS_DIR / "alerts_test.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_firing_and_a_quiet_unit_test() -> None:
    cases = [
        case
        for test in load_yaml(PROMETHEUS_DIR / "alerts_test.yml")["tests"]
        for case in test.get("alert_rule_test", [])
    ]
    for rule in alert_rules():
        name = rule["alert"]
        mine = [case for case in cases if case["alertname"] == name]
        assert any(case["exp_alerts"] for case in mine), f"{name}: no case where it fires"
        assert any(not case["exp_alerts"] for case in mine), f"{name}: no case where it stays quiet"


def test_every_alert_links_a_runbook_in_the_readme() -> None:
    anchors = {
        re.sub(r"[^a-z0-9 -]", "", heading.lower()).replace(" ", "-")
        for heading in re.findall(r"^#+ (.+)$", README.read_text(), re.MULTILINE)
    }
    for rule in alert_rules():
        runbook = rule["annotations"]["runbook"]
        assert runbook.startswith("README.md#"), runbook
        assert runbook.removeprefix("README.md#") in anchors, f"{rule['alert']}: {runbook}"
        assert rule["labels"]["severity"] in {"warning", "critical"}


@pytest.mark.parametrize("name", SERVICE_NAMES)
def test_promtool_accepts_each_services_metrics(running_stack: RunningStack, name: str) -> None:
    text = running_stack.metrics_text(name)
    assert "reactions_http_requests_total" in text
    result = promtool("check", "metrics", stdin=text)
    assert result.returncode == 0, f"{name}: {result.stdout}{result.stderr}"


class PrometheusServer:
    """Debian's prometheus on a free port, scraping the running stack."""

    def __init__(self, config: Path, data: Path) -> None:
        self.port = free_port()
        self.process = Process(
            "prometheus",
            [
                installed("prometheus"),
                f"--config.file={config}",
                f"--storage.tsdb.path={data}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--storage.tsdb.retention.time=1h",
            ],
            [self.port],
            data.parent / "prometheus.log",
        )
        self.url = f"http://127.0.0.1:{self.port}"

    def api(self, path: str, **params: str) -> Any:
        response = httpx.get(f"{self.url}/api/v1/{path}", params=params, timeout=10)
        body = response.json()
        assert body["status"] == "success", (path, params, body)
        return body["data"]


def config_for(stack: RunningStack, tmp: Path) -> Path:
    """A copy of prometheus.yml scraping the test's services every second."""
    config = load_yaml(PROMETHEUS_DIR / "prometheus.yml")
    config["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
    config["rule_files"] = [str(PROMETHEUS_DIR / path) for path in config["rule_files"]]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == set(SERVICE_NAMES)
    for name, job in jobs.items():
        job["static_configs"] = [{"targets": [f"127.0.0.1:{stack.services[name].port}"]}]
    path = tmp / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def prometheus(
    running_stack: RunningStack, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PrometheusServer]:
    """Prometheus with our config and rules, once every target is up."""
    tmp = tmp_path_factory.mktemp("prometheus")
    server = PrometheusServer(config_for(running_stack, tmp), tmp / "data")
    server.process.start()
    try:

        def ready() -> bool:
            server.process.check_alive()
            try:
                return httpx.get(f"{server.url}/-/ready", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(ready, timeout=60, what="prometheus to be ready")
        yield server
    finally:
        server.process.stop()


def test_prometheus_scrapes_all_three_services(prometheus: PrometheusServer) -> None:
    last: list[dict[str, Any]] = []

    def all_up() -> bool:
        nonlocal last
        last = prometheus.api("targets", state="active")["activeTargets"]
        return sorted(t["labels"]["job"] for t in last if t["health"] == "up") == sorted(
            SERVICE_NAMES
        )

    try:
        wait_until(all_up, timeout=60, what="all three targets to be up")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; targets: {last}") from None

    def scraped_up() -> set[str]:
        result = prometheus.api("query", query='up{job=~"ingest|aggregator|reader"} == 1')
        return {sample["metric"]["job"] for sample in result["result"]}

    wait_until(lambda: scraped_up() == set(SERVICE_NAMES), timeout=30, what="up == 1 per job")
    writes = prometheus.api(
        "query",
        query='sum(reactions_http_requests_total{job="ingest", route="/v1/votes", status="202"})',
    )["result"]
    assert float(writes[0]["value"][1]) >= 4  # the four votes the fixture drove
    reads = prometheus.api(
        "query", query='sum(reactions_http_requests_total{job="reader", method="GET"})'
    )["result"]
    assert float(reads[0]["value"][1]) >= 1


def test_every_service_counts_its_http_requests(prometheus: PrometheusServer) -> None:
    """The readiness and error-rate alerts need every service, the aggregator included, to
    count its requests (probes hit /readyz) in reactions_http_requests_total."""
    last: set[str] = set()

    def every_job() -> bool:
        nonlocal last
        result = prometheus.api("query", query="sum by (job) (reactions_http_requests_total)")
        last = {sample["metric"]["job"] for sample in result["result"]}
        return last == set(SERVICE_NAMES)

    try:
        wait_until(every_job, timeout=30, what="reactions_http_requests_total from every job")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; jobs with series: {sorted(last)}") from None


def test_prometheus_loads_and_evaluates_every_alert_rule(prometheus: PrometheusServer) -> None:
    expected = {rule["alert"] for rule in alert_rules()}
    last: dict[str, str] = {}

    def all_evaluated_ok() -> bool:
        nonlocal last
        groups = prometheus.api("rules", type="alert")["groups"]
        last = {rule["name"]: rule["health"] for group in groups for rule in group["rules"]}
        return set(last) == expected and set(last.values()) == {"ok"}

    try:
        wait_until(all_evaluated_ok, timeout=30, what="every alert rule to evaluate")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; rule health: {last}") from None


def _queries() -> list[Any]:
    dashboard = json.loads((GRAFANA_DIR / "dashboards" / "reactions.json").read_text())
    alerts = [pytest.param(rule["expr"], id=rule["alert"]) for rule in alert_rules()]
    panels = [
        pytest.param(target["expr"], id=f"{panel['title']}-{target['refId']}")
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    ]
    return alerts + panels


@pytest.mark.parametrize("expr", _queries())
def test_prometheus_evaluates_every_alert_and_panel_query(
    prometheus: PrometheusServer, expr: str
) -> None:
    query = expr.replace("$__rate_interval", "1m")
    prometheus.api("query", query=query)  # asserts status "success": it parses and evaluates
