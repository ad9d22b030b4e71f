"""Reads at saturation: one hot article, uniform over 10,000 articles and bulk 50 ids, against
a bare endpoint answering the same bytes without Redis."""

from __future__ import annotations

import random
import urllib.error
import urllib.request

import redis

from bench.context import Context
from bench.stack import mark_view
from bench.stats import Figure, Row, Target, paired_ratios, unavailable
from bench.wrk import WrkResult, run_wrk
from deploy.local.client import ApiRequest, VoteApi
from shared.reactions import DEFAULT_TYPES
from shared.tallies import counts_key

ARTICLES = 10_000
BULK_IDS = 50
CONNECTIONS = 32
PREFIX = "bench-a"
HOT = "bench-hot"


def preload(redis_url: str) -> None:
    """Counts for the hot article and the 10,000 uniform ones, written straight to the view."""
    rng = random.Random(11)
    client = redis.Redis.from_url(redis_url)
    try:
        pipe = client.pipeline(transaction=False)
        for i in [*range(1, ARTICLES + 1), HOT]:
            article = f"{PREFIX}{i}" if isinstance(i, int) else i
            pipe.hset(counts_key(article), mapping={r: rng.randrange(5000) for r in DEFAULT_TYPES})
        pipe.execute()
    finally:
        client.close()


def fetch(request: ApiRequest) -> tuple[int, bytes]:
    """Status and body of one request of the public API."""
    plain = urllib.request.Request(
        request.url, data=request.body, headers=dict(request.headers), method=request.method
    )
    try:
        with urllib.request.urlopen(plain, timeout=10) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, b""


def run(ctx: Context) -> None:
    """Reader GETs (hot, uniform, bulk) and the bare endpoint, round by round."""
    stack = ctx.stack
    preload(stack.redis_url())
    mark_view(stack.redis_url(), stack.topic)
    reader = stack.start_service("reader")
    api = VoteApi(reader_url=reader.url)
    _, tally = fetch(api.tally(f"{PREFIX}1"))
    bulk_status, bulk = fetch(api.tallies(f"{PREFIX}{i}" for i in range(1, BULK_IDS + 1)))
    has_bulk = bulk_status == 200
    (stack.dir / "tally.json").write_bytes(tally)
    (stack.dir / "bulk.json").write_bytes(bulk if has_bulk else tally)
    bare = stack.start_app(
        "bare_read",
        {
            "BENCH_TALLY_FILE": str(stack.dir / "tally.json"),
            "BENCH_BULK_FILE": str(stack.dir / "bulk.json"),
        },
    )
    runs: dict[str, tuple[str, str, list[str]]] = {
        "hot": (reader.url, "get_tally", ["1", HOT]),
        "uniform": (reader.url, "get_tally", [str(ARTICLES), PREFIX]),
        "bare": (bare.url, "get_tally", [str(ARTICLES), PREFIX]),
    }
    if has_bulk:
        runs["bulk"] = (reader.url, "get_bulk", [str(ARTICLES), str(BULK_IDS), PREFIX])
        runs["bare_bulk"] = (bare.url, "get_bulk", [str(ARTICLES), str(BULK_IDS), PREFIX])
    results: dict[str, list[WrkResult]] = {name: [] for name in runs}
    for url, script, args in runs.values():
        run_wrk(url, script, args, duration_s=1, connections=4)
    for r in range(ctx.sizes.rounds):
        for name, (url, script, args) in runs.items():
            results[name].append(
                run_wrk(
                    url, script, args, duration_s=ctx.sizes.wrk_seconds, connections=CONNECTIONS
                )
            )
        ctx.say(
            f"read round {r + 1}: "
            + ", ".join(f"{n} {res[-1].ok_per_second:,.0f}/s" for n, res in results.items())
        )
    stack.stop_part(bare)
    stack.stop_part(reader)

    rps = {n: [x.ok_per_second for x in res] for n, res in results.items()}
    note = f"wrk -t1 -c{CONNECTIONS}, {ctx.sizes.wrk_seconds:g}s per run; body {len(tally)} B"
    bare_name = f"bare endpoint, same {len(tally)} B"
    ctx.add(
        Row(
            "read",
            "GET tally req/s, one hot article",
            "req/s",
            Figure.of(rps["hot"]),
            bare_name,
            Figure.of(rps["bare"]),
            paired_ratios(rps["hot"], rps["bare"]),
            Target(">=", 0.9),
            note,
        ),
        Row(
            "read",
            f"GET tally req/s, uniform over {ARTICLES:,}",
            "req/s",
            Figure.of(rps["uniform"]),
            bare_name,
            Figure.of(rps["bare"]),
            paired_ratios(rps["uniform"], rps["bare"]),
            Target(">=", 0.6),
            note,
        ),
    )
    if has_bulk:
        ctx.add(
            Row(
                "read",
                f"GET bulk {BULK_IDS} ids req/s",
                "req/s",
                Figure.of(rps["bulk"]),
                f"bare endpoint, same {len(bulk)} B",
                Figure.of(rps["bare_bulk"]),
                paired_ratios(rps["bulk"], rps["bare_bulk"]),
                Target(">=", 0.5),
                f"wrk -t1 -c{CONNECTIONS}, {ctx.sizes.wrk_seconds:g}s per run; body {len(bulk)} B",
            )
        )
    else:
        ctx.add(
            unavailable(
                "read",
                f"GET bulk {BULK_IDS} ids req/s",
                "req/s",
                f"GET /v1/reactions answered {bulk_status}",
                target=Target(">=", 0.5),
            )
        )
