"""Redis memory: load a realistic data set through the aggregator's own apply script, then
read MEMORY USAGE of sampled articles' keys. The baseline is the raw payload of a pair (the
reader id plus its stored value), the least any layout could keep."""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict

from redis.asyncio import Redis

from bench.backlog import Workload, generate
from bench.context import Context
from bench.stats import Figure, Row, Target, paired_ratios
from services.aggregator.scripts import (
    MAX_EVENTS_PER_CALL,
    apply_event_line,
    apply_keys,
    apply_script,
    mark_text,
)
from shared.tallies import counts_key, readers_key

MEMORY_DB = 2
SAMPLE_ARTICLES = 2000


async def load(redis_url: str, workload: Workload) -> int:
    """Apply the workload's events with the fenced apply script; returns the article count."""
    redis = Redis.from_url(redis_url)
    apply = apply_script(redis)
    try:
        await redis.flushdb()
        by_article: dict[str, list[tuple[int, str, str | None]]] = defaultdict(list)
        for offset, event in enumerate(generate(workload)):
            by_article[event.article_id].append((offset, event.user_id, event.reaction))
        pipe = redis.pipeline(transaction=False)
        queued = 0
        marks: dict[str, int] = defaultdict(int)  # each call names its slot's mark
        for article_id, events in by_article.items():
            keys = apply_keys(article_id)
            for start in range(0, len(events), MAX_EVENTS_PER_CALL):
                lines = "".join(
                    apply_event_line(offset, user, reaction, None)
                    for offset, user, reaction in events[start : start + MAX_EVENTS_PER_CALL]
                )
                count = marks[keys[2]]
                args: list[int | str] = [0, lines, mark_text(count, "bench"), f"{count + 1}:bench"]
                await apply(keys=list(keys), args=args, client=pipe)
                marks[keys[2]] += 1
                queued += 1
                if queued >= 200:
                    await pipe.execute()
                    queued = 0
        await pipe.execute()
        return len(by_article)
    finally:
        await redis.aclose()


async def sample(redis_url: str, articles: list[str], seed: int | None) -> dict[str, float]:
    """Bytes per pair and per article over a random sample of articles (None: all of them)."""
    chosen = articles
    if seed is not None:
        chosen = random.Random(seed).sample(articles, min(SAMPLE_ARTICLES, len(articles)))
    redis = Redis.from_url(redis_url)
    try:
        pipe = redis.pipeline(transaction=False)
        for article in chosen:
            pipe.memory_usage(readers_key(article), samples=0)
            pipe.hlen(readers_key(article))
            pipe.memory_usage(counts_key(article), samples=0)
            pipe.hgetall(readers_key(article))
        replies = await pipe.execute()
    finally:
        await redis.aclose()
    reader_bytes = pairs = count_bytes = payload = 0
    for i in range(0, len(replies), 4):
        reader_bytes += replies[i] or 0
        pairs += replies[i + 1]
        count_bytes += replies[i + 2] or 0
        payload += sum(len(k) + len(v) for k, v in replies[i + 3].items())
    return {
        "per_pair": reader_bytes / pairs if pairs else 0.0,
        "payload_per_pair": payload / pairs if pairs else 0.0,
        "per_article": (reader_bytes + count_bytes) / len(chosen),
        "counts_per_article": count_bytes / len(chosen),
    }


def run(ctx: Context) -> None:
    """Load once, sample three times."""
    workload = Workload(events=ctx.sizes.memory_events, seed=23)
    url = ctx.stack.redis_url(MEMORY_DB)
    ctx.say(f"memory: applying {workload.events:,} events through the apply script")
    asyncio.run(load(url, workload))

    async def article_ids() -> list[str]:
        redis = Redis.from_url(url, decode_responses=True)
        try:
            return [k[4:-3] async for k in redis.scan_iter("rx:{*}:n", count=1000)]
        finally:
            await redis.aclose()

    articles = asyncio.run(article_ids())
    samples = [asyncio.run(sample(url, articles, seed)) for seed in range(ctx.sizes.rounds)]
    everything = asyncio.run(sample(url, articles, None))
    per_pair = [s["per_pair"] for s in samples]
    payload = [s["payload_per_pair"] for s in samples]
    note = (
        f"{workload.events:,} events applied, {len(articles):,} articles; MEMORY USAGE of "
        f"{SAMPLE_ARTICLES:,} random articles per run; all articles: "
        f"{everything['per_pair']:.1f} B per pair"
    )
    counts = Figure.of([s["counts_per_article"] for s in samples]).median
    ctx.add(
        Row(
            "memory",
            "Redis bytes per (article, reader)",
            "bytes",
            Figure.of(per_pair),
            "raw payload (reader id + value)",
            Figure.of(payload),
            paired_ratios(per_pair, payload),
            Target("<=", 100, "value"),
            note,
        ),
        Row(
            "memory",
            "Redis bytes per article (counts + readers)",
            "bytes",
            Figure.of([s["per_article"] for s in samples]),
            note=f"of which the counts hash: {counts:.0f} B; all articles: "
            f"{everything['per_article']:.0f} B",
        ),
    )
