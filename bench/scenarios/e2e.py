"""End to end: open-loop votes at 25, 50 and 75 % of ingest's maximum, latency from each 202
to the vote showing in the tally (SSE when the reader streams, else polling).

The maximum is measured here, with the whole pipeline running — the aggregator applying
every vote, the reader announcing them on a stream per article as the probes have them —
not taken from the ingest scenario, where ingest has the machine to itself: on two shared
cores that figure would load the pipeline past what it can carry, and measure the queue."""

from __future__ import annotations

import asyncio
import math
import threading

import aiohttp
import uvloop

from bench.context import Context
from bench.latency import LatencyResult, latency_table, open_loop, readers_needed, summary_ms
from bench.scenarios.ingest import CONNECTIONS
from bench.sse_clients import UNCAPPED
from bench.stats import Figure, Row, Target, paired_ratios
from bench.wrk import run_wrk

LEVELS = (0.25, 0.50, 0.75)
# The stream sends at most 4 updates a second per article (DESIGN), so a probe article
# voted on more often would measure that cap (up to 250 ms), not the pipeline. Two votes a
# second per probe article keep every update leading its interval; `python -m bench spike`
# shows the single-viral-article case.
SSE_VOTES_PER_ARTICLE = 2.0
FALLBACK_MAX_RPS = 400.0
P99_TARGETS_MS = {0.50: Target("<=", 100, "value"), 0.75: Target("<=", 250, "value")}
MAX_RUNS = 3
MAX_PREFIX = "bench-m"


def hold_streams(reader: str, articles: list[str], stop: threading.Event) -> None:
    """Hold one article stream per article, as the probes do, reading every byte, until
    `stop` is set."""

    async def hold() -> None:
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10)
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

            async def one(article: str) -> None:
                async with session.get(f"{reader}/v1/articles/{article}/reactions/stream") as r:
                    async for _ in r.content.iter_any():
                        pass

            streams = [asyncio.create_task(one(article)) for article in articles]
            # The stop comes from another thread: wait for it off the loop.
            await asyncio.to_thread(stop.wait)
            for stream in streams:
                stream.cancel()
            await asyncio.gather(*streams, return_exceptions=True)

    uvloop.run(hold())


def pipeline_max(ctx: Context, ingest_url: str, reader_url: str, estimate: float) -> list[float]:
    """Ingest's saturation rate (wrk, as the ingest scenario) while the aggregator applies
    the votes and the reader streams them to as many probe-like streams as the e2e runs at
    75 % of `estimate` hold (one per article, the votes spread over those articles): one
    figure per run."""
    count = max(8, math.ceil(estimate * LEVELS[-1] / SSE_VOTES_PER_ARTICLE))
    articles = [f"{MAX_PREFIX}{i}" for i in range(1, count + 1)]
    stop = threading.Event()
    streams = threading.Thread(target=hold_streams, args=(reader_url, articles, stop), daemon=True)
    streams.start()
    try:
        tokens = str(ctx.stack.tokens_file())
        return [
            run_wrk(
                ingest_url,
                "put",
                [tokens, str(count), MAX_PREFIX],
                duration_s=ctx.sizes.wrk_seconds,
                connections=CONNECTIONS,
            ).ok_per_second
            for _ in range(MAX_RUNS)
        ]
    finally:
        stop.set()
        streams.join(30)


def run(ctx: Context) -> None:
    """Three rounds per load level; each percentile is the median over rounds."""
    stack = ctx.stack
    ctx.say("e2e: starting ingest, aggregator, reader")
    # One stream per probe article, all from this one address: past the reader's caps.
    ingest, aggregator, reader = stack.start_services(
        ("ingest", {}), ("aggregator", {}), ("reader", UNCAPPED)
    )
    # The streams' count follows the rate they are measured for: a first estimate is
    # ingest's figure alone when the ingest scenario ran, else one wrk run here.
    estimate = (
        ctx.facts.get("ingest_max_rps")
        or run_wrk(
            ingest.url,
            "put",
            [str(stack.tokens_file()), "10000", "bench-a"],
            duration_s=ctx.sizes.wrk_seconds,
            connections=CONNECTIONS,
        ).ok_per_second
    )
    measured = pipeline_max(ctx, ingest.url, reader.url, estimate)
    max_rps = Figure.of(measured).median or FALLBACK_MAX_RPS
    alone = ctx.facts.get("ingest_max_rps")
    ctx.say(f"e2e: ingest maximum with the pipeline running {max_rps:,.0f}/s")
    ctx.add(
        Row(
            "e2e",
            "ingest max, whole pipeline running",
            "req/s",
            Figure.of(measured),
            "ingest alone, 1 worker, pinned" if alone else None,
            Figure.of([alone] * len(measured)) if alone else None,
            paired_ratios(measured, [alone] * len(measured)) if alone else None,
            note=f"wrk -t1 -c{CONNECTIONS} with the aggregator applying and the reader "
            "streaming each article voted on to a stream of its own, as many as the probes "
            "at 75 %; the e2e loads are shares of this",
        )
    )
    by_level: dict[float, list[LatencyResult]] = {level: [] for level in LEVELS}
    # Probe articles are fresh per run, so the same readers vote anew in every run.
    most = readers_needed(max_rps * LEVELS[-1], ctx.sizes.e2e_seconds, 4)
    tokens = stack.tokens(max(most, 20))
    # Discarded warm-up: the first votes wait for the consumer group to settle and for
    # connections and metadata to be set up, which is start-up, not steady-state latency.
    uvloop.run(
        open_loop(ingest.url, reader.url, tokens=tokens, rate=20, duration_s=1, settle_timeout_s=30)
    )
    for r in range(ctx.sizes.rounds):
        for level in LEVELS:
            result = uvloop.run(
                open_loop(
                    ingest.url,
                    reader.url,
                    tokens=tokens,
                    rate=max(max_rps * level, 1.0),
                    duration_s=ctx.sizes.e2e_seconds,
                    aggregator_metrics=f"{aggregator.url}/metrics",
                    settle_timeout_s=ctx.sizes.settle_seconds,
                    sse_votes_per_article=SSE_VOTES_PER_ARTICLE,
                )
            )
            by_level[level].append(result)
            v = summary_ms(result.visible_hist)
            ctx.say(
                f"e2e round {r + 1} at {level:.0%}: {result.achieved_rate:,.0f}/s "
                f"p99 {v['p99']:.1f} ms ({result.method})"
            )
    for part in (reader, aggregator, ingest):
        stack.stop_part(part)

    table = latency_table([(f"{lvl:.0%}", runs[-1]) for lvl, runs in by_level.items()])
    ctx.facts["e2e_table_last_round"] = table
    method = by_level[LEVELS[0]][0].method
    how = (
        f"202 → `event: tally` on the SSE stream, {SSE_VOTES_PER_ARTICLE:g} votes/s per "
        "probe article (below the stream's 4 updates/s per article)"
        if method == "sse"
        else "202 → total seen by polling GET, one request per 10 ms (reader has no SSE stream)"
    )
    for level, runs in by_level.items():
        summaries = [summary_ms(x.visible_hist) for x in runs]
        achieved = Figure.of([x.achieved_rate for x in runs])
        for key in ("p50", "p90", "p99", "p99.9", "max"):
            ctx.add(
                Row(
                    "e2e",
                    f"{key} at {level:.0%} load",
                    "ms",
                    Figure.of([s[key] for s in summaries]),
                    target=P99_TARGETS_MS.get(level) if key == "p99" else None,
                    note=(
                        f"{how}; target {max_rps * level:,.0f}/s, sent {achieved.median:,.0f}/s; "
                        "open loop (sends keep their schedule: no coordinated omission), "
                        "one hdrhistogram sample per vote"
                    )
                    if key == "p99"
                    else "",
                    extra={"method": method, "runs": [x.to_json() for x in runs]}
                    if key == "p50"
                    else {},
                )
            )
        unseen = sum(x.unseen for x in runs)
        failed = sum(x.failed for x in runs)
        lags = [x.max_lag for x in runs if x.max_lag is not None]
        drains = [x.lag_drain_s for x in runs if x.lag_drain_s is not None]
        ctx.add(
            Row(
                "e2e",
                f"max consumer lag at {level:.0%} load",
                "events",
                Figure.of(lags) if lags else None,
                note=(
                    f"drained in {Figure.of(drains).median:.1f}s after the load"
                    if drains
                    else (
                        "n/a: aggregator exports no reactions_aggregator_consumer_lag"
                        if not lags
                        else ""
                    )
                )
                + (
                    f"; {failed} PUTs failed, {unseen} votes never seen" if failed or unseen else ""
                ),
            )
        )
