"""End to end: open-loop votes at 25, 50 and 75 % of the measured ingest maximum, latency
from each 202 to the vote showing in the tally (SSE when the reader streams, else polling)."""

from __future__ import annotations

import uvloop

from bench.context import Context
from bench.latency import LatencyResult, latency_table, open_loop, readers_needed, summary_ms
from bench.stats import Figure, Row, Target

LEVELS = (0.25, 0.50, 0.75)
# The stream sends at most 4 updates a second per article (DESIGN), so a probe article
# voted on more often would measure that cap (up to 250 ms), not the pipeline. Two votes a
# second per probe article keep every update leading its interval; `python -m bench spike`
# shows the single-viral-article case.
SSE_VOTES_PER_ARTICLE = 2.0
FALLBACK_MAX_RPS = 400.0


def run(ctx: Context) -> None:
    """Three rounds per load level; each percentile is the median over rounds."""
    stack = ctx.stack
    ctx.say("e2e: starting ingest, aggregator, reader")
    ingest, aggregator, reader = stack.start_services(
        ("ingest", {}), ("aggregator", {}), ("reader", {})
    )
    max_rps = float(ctx.facts.get("ingest_max_rps") or FALLBACK_MAX_RPS)
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
                    target=Target("<=", 100, "value") if key == "p99" and level == 0.5 else None,
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
