"""The Locust file (bench/locustfile.py) drives a real stack: run headless for a few seconds
against the three services on loopback, every kind of request it makes is made, and none
fails."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

from deploy.local.keys import DevelopmentKeys
from deploy.local.process import ROOT
from services.ingest.tokens import minted, write_tokens
from tests.support import ServiceFactory

# Each kind of request the three users make, as Locust names them.
EXPECTED = {
    "GET /v1/config",
    "GET /v1/reactions",
    "GET /v1/stream (page)",
    "POST /v1/votes (set)",
    "POST /v1/votes (change)",
    "POST /v1/votes (viral)",
    "GET /v1/stream (viral)",
}


def test_locust_users_make_every_kind_of_request_without_failures(
    start_service: ServiceFactory, token_keys: DevelopmentKeys, tmp_path: Path
) -> None:
    ingest = start_service("ingest")
    start_service("aggregator")
    # Every user streams from this one address: lift the per-address stream limit, as a
    # load test from few machines must (README, Load test).
    reader = start_service("reader", env={"REACTIONS_SSE_MAX_STREAMS_PER_CLIENT": "1000"})
    tokens = tmp_path / "tokens.tsv"
    write_tokens(minted(token_keys.issuer(), 50, "a.locust-", None), tokens)
    assert ingest.url.startswith("http://127.0.0.1:") and reader.url.startswith("http://127.0.0.1:")

    stats = tmp_path / "run"
    locust = Path(sys.executable).parent / "locust"
    # Bounded: 9 users (6 page readers, 2 voters, 1 on the viral article) for 8 seconds.
    finished = subprocess.run(
        [
            str(locust),
            "-f",
            str(ROOT / "bench" / "locustfile.py"),
            "--headless",
            "--users",
            "9",
            "--spawn-rate",
            "9",
            "--run-time",
            "8s",
            "--stop-timeout",
            "10",
            "--host",
            reader.url,
            "--ingest-url",
            ingest.url,
            "--tokens-file",
            str(tokens),
            "--articles",
            "50",
            "--stream-hold",
            "1",
            "--csv",
            str(stats),
            "--only-summary",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=tmp_path,
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    with (tmp_path / "run_stats.csv").open() as f:
        rows = {row["Name"]: row for row in csv.DictReader(f) if row["Name"] != "Aggregated"}
    made = {name for name, row in rows.items() if int(row["Request Count"]) > 0}
    assert made >= EXPECTED, f"missing: {EXPECTED - made}"
    failed = {
        name: row["Failure Count"] for name, row in rows.items() if row["Failure Count"] != "0"
    }
    assert not failed, (failed, (tmp_path / "run_failures.csv").read_text()[:2000])
