"""Metrics and logs of the ingest service: the contract's metric names, JSON log lines
carrying event ids, and /metrics summed over several uvicorn workers."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import orjson
from prometheus_client.multiprocess import MultiProcessCollector

from deploy.local.client import MintedTokens, VoteClient
from tests.support import IngestFactory, eventually, metric_sum


def _events_by_worker(metrics_dir: Path) -> dict[str, float]:
    """reactions_ingest_events_total as each worker process wrote it to its own file."""
    totals = {}
    for path in metrics_dir.glob("counter_*.db"):
        totals[path.name] = sum(
            sample.value
            for metric in MultiProcessCollector.merge([str(path)])
            if metric.name == "reactions_ingest_events"
            for sample in metric.samples
            if sample.name == "reactions_ingest_events_total"
        )
    return totals


async def test_two_workers_metrics_are_summed_and_logs_are_json_with_event_ids(
    tmp_path: Path, spawn_ingest: IngestFactory, tokens: MintedTokens
) -> None:
    metrics_dir = tmp_path / "prometheus"
    metrics_dir.mkdir()
    stale = metrics_dir / "counter_999999.db"
    stale.write_bytes(b"left over from a previous run")
    service = spawn_ingest(
        f"obs-{uuid.uuid4().hex[:8]}",
        {
            "REACTIONS_WORKERS": "2",
            "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
            "REACTIONS_LOG_LEVEL": "DEBUG",
        },
    )
    assert not stale.exists()  # wiped at start
    accepted: list[str] = []
    sent = 0

    async def write_on_fresh_connections() -> dict[str, float]:
        nonlocal sent
        # New connections, so the kernel hands them to either worker.
        async with VoteClient(service.url, timeout=30, tokens=tokens) as votes:
            for _ in range(10):
                sent += 1
                response = await votes.set(
                    f"a{sent}", f"a.r{sent}", "wow", headers={"connection": "close"}
                )
                assert response.status_code == 202, response.text
                accepted.append(response.json()["event_id"])
        return _events_by_worker(metrics_dir)

    by_worker = await eventually(
        write_on_fresh_connections,
        lambda totals: sum(v > 0 for v in totals.values()) >= 2,
        timeout=60,
        what="both workers to serve writes",
    )
    async with httpx.AsyncClient(base_url=service.url, timeout=30) as http:
        text = (await http.get("/metrics")).text
    service.stop()

    assert metric_sum(text, "reactions_ingest_events_total") == len(accepted)
    assert sum(by_worker.values()) == len(accepted)
    assert max(by_worker.values()) < len(accepted)  # no single worker has them all
    assert metric_sum(text, "reactions_ingest_publish_seconds_count") == len(accepted)
    puts = [
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("reactions_http_requests_total{")
        and 'method="POST"' in line
        and 'status="202"' in line
        and 'route="/v1/votes"' in line
    ]
    assert sum(puts) == len(accepted)
    assert "reactions_http_request_duration_seconds_bucket" in text

    lines = [
        orjson.loads(line) for line in service.process.log_path.read_text().splitlines() if line
    ]
    logged = {line["event_id"] for line in lines if line.get("event") == "event_accepted"}
    assert logged == set(accepted)
    assert all(line.get("service") == "ingest" and "level" in line for line in lines)
    assert any(line.get("logger", "").startswith("uvicorn") for line in lines)


def test_the_entry_point_loads_no_metrics_before_it_chooses_where_they_are_kept() -> None:
    """prometheus-client picks where it keeps values when it is first imported, and
    `python -m services.ingest` sets PROMETHEUS_MULTIPROC_DIR only when it serves: loading
    the library before that would make a single worker count in memory while its /metrics
    read the empty directory, an empty page."""
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    code = "import sys, services.ingest.__main__; print('prometheus_client' in sys.modules)"
    loaded = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert loaded.stdout.strip() == "False"
