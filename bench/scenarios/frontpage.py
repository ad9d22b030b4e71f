"""Front pages: page views a second, each loading a page of 20 bars as the widget does,
through the nginx edge (deploy/nginx/) and, for comparison, straight at the reader, while
votes flow through ingest and the aggregator.

The load generator runs in a process of its own (bench/frontpage_load.py) and reports its
CPU. The reader's share is read from the reader itself: its request counter for the count
routes (what reaches the origin) and its CPU time, per 1,000 page views.
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
from prometheus_client.parser import text_string_to_metric_families

from bench.context import Context
from bench.pinning import cpu_seconds
from bench.sse_clients import UNCAPPED
from bench.stack import fetch_text
from bench.stats import Figure, Row, Target
from deploy.local.edge import NginxEdge
from deploy.local.process import free_port
from deploy.local.services import Service

PAGES = 20
BARS = 20
VISIBLE = 8
PAGE_VIEWS_PER_S = 200.0
VOTES_PER_S = 50.0
HOLD_S = 3.0
RETURNING = 0.2
COUNT_ROUTES = ("/v1/articles/{article_id}/reactions", "/v1/reactions")
TARGET_ORIGIN_PER_1000 = 5.0


def front_pages() -> list[list[str]]:
    """20 front pages of 20 articles each, none shared."""
    return [[f"front{p}-a{i}" for i in range(BARS)] for p in range(PAGES)]


def origin_count_requests(reader: Service) -> float:
    """The reader's answered requests on the count routes, so far."""
    text = fetch_text(f"{reader.url}/metrics", timeout=10) or ""
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "reactions_http_requests_total"
        and sample.labels.get("route") in COUNT_ROUTES
    )


class Runner:
    """One load run at a time against the edge or the reader, with the reader's share."""

    def __init__(self, ctx: Context, ingest: Service, reader: Service) -> None:
        self.ctx = ctx
        self.ingest = ingest
        self.reader = reader
        self.next_vote = 0
        self.tokens = ctx.stack.tokens(self.readers_needed())

    def readers_needed(self) -> int:
        """Readers for every vote of the whole scenario (none votes twice on an article)."""
        runs = 2 * (self.ctx.sizes.rounds + 1)
        votes = VOTES_PER_S * self.ctx.sizes.frontpage_seconds * runs
        return max(math.ceil(votes / (PAGES * VISIBLE)) + 1, 50)

    def run(self, url: str, duration_s: float) -> dict[str, Any]:
        """One run of the generator against `url` (edge or reader)."""
        spec = {
            "pages_url": url,
            "ingest_url": self.ingest.url,
            "pages": front_pages(),
            "visible": VISIBLE,
            "rate": PAGE_VIEWS_PER_S,
            "duration_s": duration_s,
            "hold_s": HOLD_S,
            "returning": RETURNING,
            "vote_rate": VOTES_PER_S,
            "first_vote": self.next_vote,
            "tokens": self.tokens,
        }
        self.next_vote += int(VOTES_PER_S * duration_s)
        path = self.ctx.stack.dir / "frontpage-spec.json"
        path.write_bytes(orjson.dumps(spec))
        pid = self.reader.process.pid()
        assert pid is not None
        requests, cpu = origin_count_requests(self.reader), cpu_seconds(pid)
        done = subprocess.run(
            [sys.executable, "-m", "bench.frontpage_load", str(path)],
            capture_output=True,
            text=True,
            timeout=duration_s + 120,
            check=True,
            cwd=Path(__file__).resolve().parents[2],
        )
        result: dict[str, Any] = orjson.loads(done.stdout.strip().splitlines()[-1])
        views = max(result["page_views"], 1)
        result["origin_per_1000"] = (origin_count_requests(self.reader) - requests) / views * 1000
        result["reader_cpu_per_1000"] = (cpu_seconds(pid) - cpu) / views * 1000
        return result


def run(ctx: Context) -> None:
    """The edge's rounds, then the reader's."""
    stack = ctx.stack
    ingest, aggregator, reader = stack.start_services(
        ("ingest", {}),
        ("aggregator", {}),
        # One load generator is one address: the per-client stream cap is lifted.
        ("reader", {**UNCAPPED, "REACTIONS_TRUSTED_PROXIES": "127.0.0.1/32"}),
    )
    edge = NginxEdge(stack.dir / "edge", free_port(), reader.port)
    edge.start()
    try:
        runner = Runner(ctx, ingest, reader)
        targets = {"edge": edge.url, "reader": reader.url}
        for url in targets.values():  # discarded warm-up: connections, topic, caches
            runner.run(url, 2)
        results: dict[str, list[dict[str, Any]]] = {name: [] for name in targets}
        # The edge's rounds back to back, then the reader's: an edge refreshes by the clock,
        # and a round straight at the reader between two of its rounds would let every entry
        # expire unseen, all refreshed as the next edge round begins, which an edge serving
        # without pause never does.
        for name, url in targets.items():
            for r in range(ctx.sizes.rounds):
                result = runner.run(url, ctx.sizes.frontpage_seconds)
                results[name].append(result)
                ctx.say(
                    f"frontpage round {r + 1} via {name}: {result['page_views']} views, "
                    f"origin {result['origin_per_1000']:.1f}/1000, "
                    f"counts p99 {result['to_counts_ms']['p99']:.0f} ms, "
                    f"vote→screen p99 {result['to_screen_ms']['p99']:.0f} ms, "
                    f"generator {result['cpu_s'] / result['wall_s']:.2f} CPU-s/s"
                )
    finally:
        edge.stop()
        for part in (reader, aggregator, ingest):
            stack.stop_part(part)
    ctx.add(*rows(ctx, results))


def rows(ctx: Context, results: dict[str, list[dict[str, Any]]]) -> list[Row]:
    """The scenario's rows: each figure through the edge, the reader alone as baseline."""
    edge, direct = results["edge"], results["reader"]

    def figure(runs: list[dict[str, Any]], key: str, sub: str | None = None) -> Figure:
        return Figure.of([x[key][sub] if sub else x[key] for x in runs])

    load = (
        f"{PAGE_VIEWS_PER_S:g} page views/s over {PAGES} front pages of {BARS} bars "
        f"({VISIBLE} in view on one stream held {HOLD_S:g} s, {RETURNING:.0%} also read "
        f"their own votes), {VOTES_PER_S:g} votes/s on the bars in view; "
        f"{ctx.sizes.frontpage_seconds:g} s per run"
    )
    generator = max(x["cpu_s"] / x["wall_s"] for x in edge + direct)
    failed = sum(x["failed"] + x["votes_failed"] + x["unseen"] for x in edge + direct)
    base = "straight at the reader"
    return [
        Row(
            "frontpage",
            "origin count requests per 1,000 page views, through the edge",
            "req",
            figure(edge, "origin_per_1000"),
            base,
            figure(direct, "origin_per_1000"),
            target=Target("<=", TARGET_ORIGIN_PER_1000, "value"),
            note=load,
        ),
        Row(
            "frontpage",
            "p99 time to counts (page view start → bulk answer), through the edge",
            "ms",
            figure(edge, "to_counts_ms", "p99"),
            base,
            figure(direct, "to_counts_ms", "p99"),
            note="open loop: each page view starts on schedule",
        ),
        Row(
            "frontpage",
            "p99 vote-to-screen (202 → its seq on a page stream), through the edge",
            "ms",
            figure(edge, "to_screen_ms", "p99"),
            base,
            figure(direct, "to_screen_ms", "p99"),
            note=f"{failed} page views, votes or vote sightings failed in all runs",
        ),
        Row(
            "frontpage",
            "reader CPU-s per 1,000 page views, through the edge",
            "CPU-s",
            figure(edge, "reader_cpu_per_1000"),
            base,
            figure(direct, "reader_cpu_per_1000"),
            note=f"the load generator (its own process) used at most {generator:.2f} CPU-s/s",
        ),
    ]
