"""The front-page load generator, run in a process of its own so that its CPU is its own
and reported: page views at a fixed rate, each loading a page of bars as the widget does,
and votes on the bars in view, seen arrive on page streams.

    python -m bench.frontpage_load SPEC.json     (prints one JSON line of results)

A page view, started on schedule whatever the answers' pace (open loop): `GET /v1/config`,
one bulk read of the page's ids (canonical: sorted, deduplicated) and, for a share of
returning readers, `GET /v1/me/reactions` with a token, all at once; once the counts are
in, one `GET /v1/stream?ids=` for the bars in view, held for a few seconds. Time to counts
runs from the scheduled start to the bulk answer. Votes go to ingest at their own fixed
rate, each by a reader who never voted on that article (so each changes its tally); one
page stream per page stays open all run, and a vote is on screen when one of them carries
the article's tally with a `seq` at least the vote's.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import resource
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import uvloop
from hdrh.histogram import HdrHistogram

from bench.latency import new_histogram, summary_ms
from deploy.local.client import ApiRequest, VoteApi

EVENT = b"event: tally"


@dataclass(frozen=True)
class Spec:
    """One run's load: where it goes, its pages and rates."""

    pages_url: str
    ingest_url: str
    pages: list[list[str]]
    visible: int
    rate: float
    duration_s: float
    hold_s: float
    returning: float
    vote_rate: float
    first_vote: int
    tokens: list[str]

    def visible_ids(self, page: list[str]) -> list[str]:
        """The bars in view: the first `visible` of the page."""
        return page[: self.visible]


@dataclass
class Seen:
    """What one run measured."""

    page_views: int = 0
    failed: int = 0
    votes: int = 0
    votes_failed: int = 0
    unseen: int = 0
    stream_events: int = 0
    to_counts: HdrHistogram = field(default_factory=new_histogram)
    to_screen: HdrHistogram = field(default_factory=new_histogram)


class ScreenWatch:
    """The highest seq each article has shown on a page stream, and the votes waiting for
    their seq to show."""

    def __init__(self, seen: Seen) -> None:
        self.seen = seen
        self.shown: dict[str, int] = {}
        self.waiting: dict[str, list[tuple[int, float]]] = {}

    def expect(self, article: str, seq: int, acked_at: float) -> None:
        """A vote on `article` was accepted with `seq` at `acked_at`."""
        if self.shown.get(article, -1) >= seq:
            self.seen.to_screen.record_value(1)  # shown before its 202 was read
            return
        self.waiting.setdefault(article, []).append((seq, acked_at))

    def show(self, article: str, seq: int) -> None:
        """A page stream carried `article`'s tally with `seq`."""
        last = self.shown.get(article)
        if last is not None and seq <= last:
            return
        self.shown[article] = seq
        pending = self.waiting.get(article)
        if not pending:
            return
        now = time.perf_counter()
        keep = []
        for wanted, acked_at in pending:
            if wanted <= seq:
                self.seen.to_screen.record_value(max(int((now - acked_at) * 1e6), 1))
            else:
                keep.append((wanted, acked_at))
        self.waiting[article] = keep

    def pending(self) -> int:
        return sum(len(v) for v in self.waiting.values())


async def run(spec: Spec) -> dict[str, Any]:
    """The whole run: probe streams up, page views and votes on schedule, then the results."""
    seen = Seen()
    watch = ScreenWatch(seen)
    timeout = aiohttp.ClientTimeout(total=30)
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        probes = [asyncio.create_task(_probe(http, spec, page, watch)) for page in spec.pages]
        async with asyncio.timeout(15):
            while len(watch.shown) < len(spec.pages) * spec.visible:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        started = time.perf_counter()
        views = asyncio.create_task(_page_views(http, spec, seen))
        await _votes(http, spec, seen, watch)
        await views
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5):
                while watch.pending():  # noqa: ASYNC110 - the probe streams run meanwhile
                    await asyncio.sleep(0.02)
        seen.unseen = watch.pending()
        wall = time.perf_counter() - started
        for task in probes:
            task.cancel()
        await asyncio.gather(*probes, return_exceptions=True)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "page_views": seen.page_views,
        "failed": seen.failed,
        "votes": seen.votes,
        "votes_failed": seen.votes_failed,
        "unseen": seen.unseen,
        "stream_events": seen.stream_events,
        "to_counts_ms": summary_ms(seen.to_counts),
        "to_screen_ms": summary_ms(seen.to_screen),
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "wall_s": wall,
    }


async def _page_views(http: aiohttp.ClientSession, spec: Spec, seen: Seen) -> None:
    total = int(spec.rate * spec.duration_s)
    rng = random.Random(7)
    began = time.perf_counter()
    tasks = []
    for n in range(total):
        scheduled = began + n / spec.rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        page = spec.pages[rng.randrange(len(spec.pages))]
        token = spec.tokens[n % len(spec.tokens)] if rng.random() < spec.returning else None
        tasks.append(asyncio.create_task(_page_view(http, spec, seen, page, token, scheduled)))
    seen.page_views = total
    await asyncio.gather(*tasks)


async def _page_view(
    http: aiohttp.ClientSession,
    spec: Spec,
    seen: Seen,
    page: list[str],
    token: str | None,
    scheduled: float,
) -> None:
    base = spec.pages_url
    api = VoteApi(reader_url=base)
    reads = [_get(http, f"{base}/v1/config"), _get(http, api.tallies(sorted(set(page))).url)]
    if token is not None:
        mine = api.mine(token, page)
        reads.append(_get(http, mine.url, dict(mine.headers)))
    counts = asyncio.ensure_future(reads[1])
    others = asyncio.gather(reads[0], *reads[2:])
    ok = await counts
    seen.to_counts.record_value(max(int((time.perf_counter() - scheduled) * 1e6), 1))
    if ok:
        url = f"{base}/v1/stream?ids={','.join(spec.visible_ids(page))}"
        ok = await _hold_stream(http, url, spec.hold_s, seen)
    if not all(await others) or not ok:
        seen.failed += 1


async def _get(
    http: aiohttp.ClientSession, url: str, headers: dict[str, str] | None = None
) -> bool:
    try:
        async with http.get(url, headers=headers) as response:
            await response.read()
            return response.status == 200
    except (aiohttp.ClientError, TimeoutError):
        return False


async def _hold_stream(http: aiohttp.ClientSession, url: str, hold_s: float, seen: Seen) -> bool:
    """Read a page stream for `hold_s` seconds (counting its tally events), then leave."""
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=10)
    try:
        async with http.get(url, timeout=timeout) as response:
            if response.status != 200:
                return False
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(hold_s):
                    async for chunk in response.content.iter_any():
                        seen.stream_events += chunk.count(EVENT)
            response.close()  # a stream is never read to its end: drop the connection
    except aiohttp.ClientError:
        return False
    return True


async def _probe(
    http: aiohttp.ClientSession, spec: Spec, page: list[str], watch: ScreenWatch
) -> None:
    """One page's stream for the whole run: every tally it carries goes to `watch`."""
    url = f"{spec.pages_url}/v1/stream?ids={','.join(spec.visible_ids(page))}"
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=10)
    async with http.get(url, timeout=timeout) as response:
        async for line in response.content:
            if line.startswith(b"data: "):
                tally = orjson.loads(line[6:])
                watch.show(tally["article_id"], int(tally["seq"]))


async def _votes(http: aiohttp.ClientSession, spec: Spec, seen: Seen, watch: ScreenWatch) -> None:
    """`vote_rate` votes a second on the bars in view, open loop, for the run's duration."""
    articles = [a for page in spec.pages for a in spec.visible_ids(page)]
    api = VoteApi(ingest_url=spec.ingest_url)
    total = int(spec.vote_rate * spec.duration_s)
    began = time.perf_counter()
    tasks = []
    for k in range(total):
        delay = began + k / spec.vote_rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        n = spec.first_vote + k
        # Vote n: article n mod A, by reader n div A: no reader votes twice on an article.
        article = articles[n % len(articles)]
        vote = api.vote(spec.tokens[n // len(articles)], article, "love")
        tasks.append(asyncio.create_task(_vote(http, vote, article, seen, watch)))
    await asyncio.gather(*tasks)


async def _vote(
    http: aiohttp.ClientSession, vote: ApiRequest, article: str, seen: Seen, watch: ScreenWatch
) -> None:
    try:
        async with http.post(vote.url, data=vote.body, headers=dict(vote.headers)) as response:
            body = await response.read()
            acked_at = time.perf_counter()
            if response.status != 202:
                seen.votes_failed += 1
                return
    except (aiohttp.ClientError, TimeoutError):
        seen.votes_failed += 1
        return
    seen.votes += 1
    watch.expect(article, int(orjson.loads(body)["seq"]), acked_at)


def main(argv: list[str]) -> int:
    """Run the spec in argv[1]; print the results as one JSON line."""
    spec = Spec(**orjson.loads(Path(argv[1]).read_bytes()))
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    result = uvloop.run(run(spec))
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
