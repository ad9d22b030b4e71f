"""Trending's 24-hour window on a day of buckets: GET /v1/trending?window=24h requests a
second with the reader's cache off (every request merges), and the Redis time each merge
takes (`INFO commandstats`: ZUNIONSTORE µs per call, in the reader's merge script).
Measured with the rollups (at most 39 sets
a day) and, back to back in the same round as the baseline, the merge of the 1,440 minute
buckets the reader did before them: the same reader with the rollups marker deleted falls
back to exactly that."""

from __future__ import annotations

import random
import time
from collections import Counter
from dataclasses import dataclass
from importlib import resources

import redis

from bench.context import Context
from bench.scenarios.read import fetch
from bench.stack import mark_view
from bench.stats import Figure, Row, paired_ratios
from deploy.local.client import VoteApi
from services.aggregator.scripts import trend_calls
from services.reader.trending import window_buckets
from shared.tallies import TREND_ROLLUPS_SINCE_KEY, trend_bucket_key

TRENDING_DB = 3
ARTICLES = 10_000
VOTES_PER_MINUTE = 1_000  # 1.44 million votes a day, Zipf-skewed over the articles
DAY = 24 * 60
AHEAD = 15


@dataclass(frozen=True)
class DayOfBuckets:
    """What `load` wrote: the first minute of the day and its minute buckets' entries."""

    first_minute: int
    entries: int


def load(
    redis_url: str, *, votes_per_minute: int = VOTES_PER_MINUTE, seed: int = 17
) -> DayOfBuckets:
    """A day of `all` buckets as the aggregator writes them: minute buckets and rollups
    (the database of `redis_url` is emptied first)."""
    rng = random.Random(seed)
    weights = [1 / (rank + 1) for rank in range(ARTICLES)]
    last = int(time.time()) // 60
    client = redis.Redis.from_url(redis_url)
    script = client.register_script(
        resources.files("shared").joinpath("lua/trend_add.lua").read_text()
    )
    entries = 0
    try:
        client.flushdb()
        pipe = client.pipeline(transaction=False)
        # A quarter of an hour past now too, so the window stays a whole day while measured.
        for minute in range(last - DAY + 1, last + AHEAD + 1):
            votes = Counter(rng.choices(range(ARTICLES), weights=weights, k=votes_per_minute))
            entries += len(votes) if minute <= last else 0
            pairs = [item for a, n in votes.items() for item in (f"story-{a}", n)]
            for keys, args in trend_calls({"all": pairs}, minute, last):
                script(keys=list(keys), args=list(args), client=pipe)
            if minute % 20 == 0:
                pipe.execute()
        pipe.execute()
    finally:
        client.close()
    return DayOfBuckets(last - DAY + 1, entries)


def merge_usec(client: redis.Redis) -> tuple[int, int]:
    """(calls, µs) of ZUNIONSTORE (the reader's merge) since the last CONFIG RESETSTAT."""
    stats = client.info("commandstats").get("cmdstat_zunionstore", {})
    return int(stats.get("calls", 0)), int(stats.get("usec", 0))


def redis_cpu_s(client: redis.Redis) -> float:
    """CPU seconds redis-server has used (its main thread does the merges): unlike the
    elapsed time of a command, not inflated when a busy machine takes the core away."""
    cpu = client.info("cpu")
    return float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])


def entries_merged(client: redis.Redis, day: DayOfBuckets, rollups: bool) -> int:
    """Sorted-set entries the 24 h merge reads now, with the rollups or without."""
    last = int(time.time()) // 60
    buckets = window_buckets(last, DAY, day.first_minute if rollups else None)
    pipe = client.pipeline(transaction=False)
    for span, index in buckets:
        pipe.zcard(trend_bucket_key("all", span, index))
    return sum(pipe.execute())


def merges(reader_url: str, count: int) -> float:
    """Requests a second of `count` GETs of the 24 h list, one after another (each waits for
    its merge: with the cache off every request merges, and merges of one list run one at a
    time per reader process anyway)."""
    api = VoteApi(reader_url=reader_url)
    started = time.perf_counter()
    for _ in range(count):
        status, _ = fetch(api.trending("all", "24h"))
        if status != 200:
            raise RuntimeError(f"GET /v1/trending answered {status}")
    return count / (time.perf_counter() - started)


def run(ctx: Context) -> None:
    """Load a day of buckets, then per round: the reader with rollups, and without."""
    url = ctx.stack.redis_url(TRENDING_DB)
    day = load(url)
    mark_view(url, ctx.stack.topic)
    ctx.say(
        f"trending: a day of buckets, {VOTES_PER_MINUTE:,} votes a minute over {ARTICLES:,} "
        f"articles, {day.entries:,} minute-bucket entries"
    )
    reader = ctx.stack.start_service(
        "reader", REACTIONS_REDIS_URL=url, REACTIONS_TRENDING_CACHE_MS="0"
    )
    client = redis.Redis.from_url(url)
    requests = 10 if ctx.quick else 25
    rates: dict[str, list[float]] = {"rollups": [], "minutes": []}
    usec: dict[str, list[float]] = {"rollups": [], "minutes": []}
    cpu: dict[str, list[float]] = {"rollups": [], "minutes": []}

    def measure(way: str) -> None:
        if way == "rollups":
            client.set(TREND_ROLLUPS_SINCE_KEY, day.first_minute)
        else:
            client.delete(TREND_ROLLUPS_SINCE_KEY)
        client.config_resetstat()
        used = redis_cpu_s(client)
        rates[way].append(merges(reader.url, requests))
        cpu[way].append((redis_cpu_s(client) - used) / requests * 1e6)
        calls, spent = merge_usec(client)
        usec[way].append(spent / calls if calls else 0.0)

    try:
        merges(reader.url, 1)
        for r in range(ctx.sizes.rounds):
            for way in ("rollups", "minutes") if r % 2 == 0 else ("minutes", "rollups"):
                measure(way)
            ctx.say(
                f"trending round {r + 1}: 24h {rates['rollups'][-1]:,.2f}/s with rollups "
                f"({cpu['rollups'][-1]:,.0f} µs of Redis CPU), {rates['minutes'][-1]:,.2f}/s "
                f"from minute buckets ({cpu['minutes'][-1]:,.0f} µs)"
            )
        entries = {way: entries_merged(client, day, way == "rollups") for way in rates}
    finally:
        client.close()
        ctx.stack.stop_part(reader)

    note = (
        f"a day of buckets: {VOTES_PER_MINUTE:,} votes a minute, Zipf over {ARTICLES:,} "
        f"articles ({day.entries:,} minute-bucket entries); reader cache off; {requests} "
        "requests one after another per run"
    )
    baseline = "minute buckets only (1,440 sets, as before rollups)"
    ctx.add(
        Row(
            "trending",
            "GET 24h trending req/s, every request merged",
            "req/s",
            Figure.of(rates["rollups"]),
            baseline,
            Figure.of(rates["minutes"]),
            paired_ratios(rates["rollups"], rates["minutes"]),
            note=note,
        ),
        Row(
            "trending",
            "Redis CPU per 24h request",
            "µs",
            Figure.of(cpu["rollups"]),
            baseline,
            Figure.of(cpu["minutes"]),
            paired_ratios(cpu["rollups"], cpu["minutes"]),
            note=f"redis-server CPU time over the run / requests; entries merged per request: "
            f"{entries['rollups']:,} with rollups, {entries['minutes']:,} from minute buckets",
        ),
        Row(
            "trending",
            "Redis time per 24h merge (ZUNIONSTORE)",
            "µs",
            Figure.of(usec["rollups"]),
            baseline,
            Figure.of(usec["minutes"]),
            paired_ratios(usec["rollups"], usec["minutes"]),
            note="INFO commandstats usec per ZUNIONSTORE call (elapsed: grows when the machine is "
            "busy); with rollups at most 39 sets merged",
        ),
    )
