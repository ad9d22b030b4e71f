"""End-to-end latency: an open-loop generator of votes and watchers that see each new vote
arrive in the tally, recorded into HDR histograms.

Each vote sets a reaction of a fresh reader on one of a few probe articles, so it raises
that article's total by exactly one: vote `n` goes to article `n % A` as reader `n // A`
(one token per reader, used once per article). When its 202 arrives, `s` votes have been
sent to the article
so far; every event that can precede it in the partition was sent before that moment, so the
vote is surely visible once the article's total reaches `start + s` (a bound that errs on
the late side by at most the in-flight PUTs). Watchers follow the totals over the reader's
SSE stream when it has one, else by polling the plain GET; the result says which.

The generator uses aiohttp: on a shared 2-core machine httpx's per-request cost made the
generator, not the service, the bottleneck from about 300 PUTs a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal

import aiohttp
import orjson
from hdrh.histogram import HdrHistogram
from prometheus_client.parser import text_string_to_metric_families

from deploy.local.client import VoteApi

Method = Literal["sse", "poll"]
LAG_METRIC = "reactions_aggregator_consumer_lag"
PERCENTILES = (50.0, 90.0, 99.0, 99.9)


def new_histogram() -> HdrHistogram:
    """Microseconds from 1 µs to 10 minutes, 3 significant digits."""
    return HdrHistogram(1, 600_000_000, 3)


def summary_ms(hist: HdrHistogram) -> dict[str, float]:
    """p50, p90, p99, p99.9 and max of a µs histogram, in milliseconds."""
    out = {f"p{p:g}": hist.get_value_at_percentile(p) / 1000 for p in PERCENTILES}
    out["max"] = hist.get_max_value() / 1000
    out["count"] = float(hist.get_total_count())
    return out


@dataclass
class LatencyResult:
    """What one open-loop run measured."""

    method: Method
    target_rate: float
    duration_s: float
    sent: int = 0
    accepted: int = 0
    failed: int = 0
    unseen: int = 0
    put_hist: HdrHistogram = field(default_factory=new_histogram)
    visible_hist: HdrHistogram = field(default_factory=new_histogram)
    max_lag: float | None = None
    lag_drain_s: float | None = None

    @property
    def achieved_rate(self) -> float:
        return self.accepted / self.duration_s if self.duration_s else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "target_rate": self.target_rate,
            "achieved_rate": self.achieved_rate,
            "sent": self.sent,
            "accepted": self.accepted,
            "failed": self.failed,
            "unseen": self.unseen,
            "put_ms": summary_ms(self.put_hist),
            "visible_ms": summary_ms(self.visible_hist),
            "max_consumer_lag": self.max_lag,
            "lag_drain_s": self.lag_drain_s,
        }


class TallyWatch:
    """The totals of the probe articles as seen by readers, and the votes waiting to show."""

    def __init__(self, on_visible: Callable[[float, float], None]) -> None:
        self.totals: dict[str, int] = {}
        self.waiting: dict[str, list[tuple[int, float]]] = {}
        self.on_visible = on_visible
        self.changed = asyncio.Event()

    def expect(self, article: str, needed_total: int, acked_at: float) -> None:
        """Wait for `article`'s total to reach `needed_total`; `acked_at` is the 202's time."""
        if self.totals.get(article, -1) >= needed_total:
            self.on_visible(acked_at, time.perf_counter())
            return
        self.waiting.setdefault(article, []).append((needed_total, acked_at))
        self.changed.set()

    def seen(self, article: str, total: int) -> None:
        """A reader saw `total` on `article`: resolve every vote it makes visible."""
        now = time.perf_counter()
        self.totals[article] = max(total, self.totals.get(article, -1))
        pending = self.waiting.get(article)
        if not pending:
            return
        keep = []
        for needed, acked_at in pending:
            if total >= needed:
                self.on_visible(acked_at, now)
            else:
                keep.append((needed, acked_at))
        self.waiting[article] = keep

    def pending(self) -> int:
        return sum(len(v) for v in self.waiting.values())

    def give_up(self, now: float) -> int:
        """Record every vote still waiting as seen `now` (a lower bound); return how many."""
        count = 0
        for pending in self.waiting.values():
            for _, acked_at in pending:
                self.on_visible(acked_at, now)
                count += 1
        self.waiting.clear()
        return count


async def detect_method(session: aiohttp.ClientSession, reader: str, article: str) -> Method:
    """`sse` when the reader streams `event: tally` for an article, else `poll`."""
    url = f"{reader}/v1/articles/{article}/reactions/stream"
    try:
        async with asyncio.timeout(5), session.get(url) as response:
            if response.status != 200 or "text/event-stream" not in response.headers.get(
                "content-type", ""
            ):
                return "poll"
            async for raw in response.content:
                line = raw.decode().strip()
                if line.startswith("event:") and line.split(":", 1)[1].strip() == "tally":
                    return "sse"
    except (TimeoutError, aiohttp.ClientError):
        return "poll"
    return "poll"


async def read_total(session: aiohttp.ClientSession, reader: str, article: str) -> int:
    """The article's current total from the plain GET."""
    request = VoteApi(reader_url=reader).tally(article)
    async with session.request(
        request.method, request.url, data=request.body, headers=dict(request.headers)
    ) as response:
        response.raise_for_status()
        return int(orjson.loads(await response.read())["total"])


async def watch_sse(
    session: aiohttp.ClientSession,
    reader: str,
    article: str,
    watch: TallyWatch,
    ready: asyncio.Event,
) -> None:
    """Follow one article's SSE stream, feeding every tally's total to `watch`."""
    url = f"{reader}/v1/articles/{article}/reactions/stream"
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=10)
    async with session.get(url, timeout=timeout) as response:
        event = ""
        async for raw in response.content:
            line = raw.decode().rstrip("\r\n")
            if line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
            elif line.startswith("data:") and event == "tally":
                watch.seen(article, int(orjson.loads(line[5:])["total"]))
                ready.set()


async def watch_poll(
    session: aiohttp.ClientSession,
    reader: str,
    articles: list[str],
    watch: TallyWatch,
    interval: float,
) -> None:
    """GET one article with votes waiting at a time, `interval` apart: the poller's own load
    on the reader stays under 1/interval requests a second whatever the PUT rate."""
    turn = 0
    while True:
        busy = [a for a in articles if watch.waiting.get(a)]
        if not busy:
            watch.changed.clear()
            await watch.changed.wait()
            continue
        article = busy[turn % len(busy)]
        turn += 1
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
            watch.seen(article, await read_total(session, reader, article))
        await asyncio.sleep(interval)


def consumer_lag(metrics_text: str) -> float | None:
    """Total consumer lag over partitions from the aggregator's exposition, if it exports it."""
    total: float | None = None
    for family in text_string_to_metric_families(metrics_text):
        if family.name == LAG_METRIC:
            for sample in family.samples:
                total = (total or 0.0) + sample.value
    return total


async def sample_lag(
    session: aiohttp.ClientSession, metrics_url: str, series: list[tuple[float, float]]
) -> None:
    """Append (time, total lag) every 250 ms until cancelled; stop if the metric is absent."""
    while True:
        try:
            async with session.get(metrics_url) as response:
                lag = consumer_lag(await response.text())
        except (aiohttp.ClientError, TimeoutError):
            lag = None
        if lag is None:
            return
        series.append((time.perf_counter(), lag))
        await asyncio.sleep(0.25)


def readers_needed(rate: float, duration_s: float, probe_articles: int) -> int:
    """How many readers (tokens) a run needs: each votes once on each probe article."""
    return math.ceil(max(int(rate * duration_s), 1) / probe_articles)


async def open_loop(
    ingest: str,
    reader: str,
    *,
    tokens: Sequence[str],
    rate: float,
    duration_s: float,
    probe_articles: int = 4,
    sse_votes_per_article: float | None = None,
    method: Method | Literal["auto"] = "auto",
    aggregator_metrics: str | None = None,
    poll_interval_s: float = 0.01,
    settle_timeout_s: float = 30.0,
    prefix: str | None = None,
) -> LatencyResult:
    """Send `rate` votes a second for `duration_s` on schedule, whatever the answers' pace,
    and measure vote→202 (from the scheduled send) and 202→visible for every vote. The
    readers' `tokens` must be enough for `readers_needed` (ValueError otherwise).

    With `sse_votes_per_article` and a streaming reader, the votes are spread over enough
    probe articles that none gets more than that many a second: the stream coalesces
    updates to a few a second per article, which would otherwise be what is measured.
    """
    prefix = prefix or f"probe-{uuid.uuid4().hex[:8]}-"
    timeout = aiohttp.ClientTimeout(total=10)
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=512), timeout=timeout) as client,
        # No connection limit: one stream per probe article.
        aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0), timeout=timeout
        ) as watch_client,
    ):
        chosen: Method = (
            await detect_method(watch_client, reader, f"{prefix}0") if method == "auto" else method
        )
        if chosen == "sse" and sse_votes_per_article:
            probe_articles = max(probe_articles, math.ceil(rate / sse_votes_per_article))
        articles = [f"{prefix}{i}" for i in range(probe_articles)]
        needed = readers_needed(rate, duration_s, probe_articles)
        if len(tokens) < needed:
            raise ValueError(
                f"{rate:g} votes/s for {duration_s:g} s on {probe_articles} article(s) need "
                f"{needed} readers' tokens; {len(tokens)} given"
            )
        result = LatencyResult(chosen, rate, duration_s)
        watch = TallyWatch(partial(_record_visible, result))
        start_totals = dict(
            zip(
                articles,
                await asyncio.gather(*(read_total(watch_client, reader, a) for a in articles)),
                strict=True,
            )
        )
        for article, total in start_totals.items():
            watch.seen(article, total)
        watchers = await _start_watchers(
            watch_client, reader, articles, watch, chosen, poll_interval_s
        )
        lag_series: list[tuple[float, float]] = []
        if aggregator_metrics:
            watchers.append(
                asyncio.create_task(sample_lag(watch_client, aggregator_metrics, lag_series))
            )
        sender = _VoteSender(client, VoteApi(ingest), tokens, start_totals, watch, result)
        load_ended = await sender.send_on_schedule(rate, duration_s, settle_timeout_s)
        deadline = load_ended + settle_timeout_s
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(deadline - time.perf_counter(), 0)):
                while watch.pending():  # noqa: ASYNC110 - watchers run elsewhere; bounded
                    await asyncio.sleep(0.02)
        result.unseen = watch.give_up(time.perf_counter())
        if lag_series:
            await _drain_lag(result, lag_series, watchers[-1], load_ended, deadline)
        for task in watchers:
            task.cancel()
        await asyncio.gather(*watchers, return_exceptions=True)
    return result


def _record_visible(result: LatencyResult, acked_at: float, seen_at: float) -> None:
    # One sample per vote, never a synthetic one: the generator is open-loop, so a slow
    # answer delays no later send and no vote goes unrecorded. (HdrHistogram's
    # record_corrected_value back-fills for closed-loop generators; here it would invent
    # samples, and in pure Python, for an overload of seconds at a 1 ms interval, take
    # longer than the run.)
    result.visible_hist.record_value(max(int((seen_at - acked_at) * 1e6), 1))


async def _start_watchers(
    session: aiohttp.ClientSession,
    reader: str,
    articles: list[str],
    watch: TallyWatch,
    method: Method,
    poll_interval_s: float,
) -> list[asyncio.Task[None]]:
    """One stream per probe article (ready once each has its first tally), or one poller."""
    if method != "sse":
        return [asyncio.create_task(watch_poll(session, reader, articles, watch, poll_interval_s))]
    readies = [asyncio.Event() for _ in articles]
    watchers = [
        asyncio.create_task(watch_sse(session, reader, a, watch, r))
        for a, r in zip(articles, readies, strict=True)
    ]
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(15):
            await asyncio.gather(*(r.wait() for r in readies))
    return watchers


async def _drain_lag(
    result: LatencyResult,
    lag_series: list[tuple[float, float]],
    sampler: asyncio.Task[None],
    load_ended: float,
    deadline: float,
) -> None:
    """The highest lag seen, and how long after the load the lag took to reach zero."""
    result.max_lag = max(v for _, v in lag_series)
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(max(deadline - time.perf_counter(), 0)):
            while lag_series[-1][1] > 0 and not sampler.done():  # noqa: ASYNC110
                await asyncio.sleep(0.1)
    zero_after = [t for t, v in lag_series if t >= load_ended and v == 0]
    result.lag_drain_s = (zero_after[0] - load_ended) if zero_after else None


class _VoteSender:
    """The open-loop generator: each vote leaves at its scheduled time, answered or not."""

    def __init__(
        self,
        client: aiohttp.ClientSession,
        api: VoteApi,
        tokens: Sequence[str],
        start_totals: dict[str, int],
        watch: TallyWatch,
        result: LatencyResult,
    ) -> None:
        self.client = client
        self.api = api
        self.tokens = tokens
        self.articles = list(start_totals)
        self.start_totals = start_totals
        self.sent_per_article = dict.fromkeys(self.articles, 0)
        self.watch = watch
        self.result = result

    async def send_on_schedule(self, rate: float, duration_s: float, settle_s: float) -> float:
        """Send `rate` votes a second for `duration_s`; wait up to `settle_s` for answers.

        Returns when the load ended. PUTs still unanswered `settle_s` after it count as
        failed: one deadline bounds the run when the system is overloaded.
        """
        total = max(int(rate * duration_s), 1)
        tasks: list[asyncio.Task[None]] = []
        began = time.perf_counter()
        for seq in range(total):
            scheduled = began + seq / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(self.put(seq, scheduled)))
        self.result.sent = total
        # The offered rate is what was sent over the sending window; answers may trail it.
        load_ended = time.perf_counter()
        self.result.duration_s = max(load_ended - began, duration_s)
        _, unanswered = await asyncio.wait(tasks, timeout=settle_s)
        for task in unanswered:
            task.cancel()
        await asyncio.gather(*unanswered, return_exceptions=True)
        self.result.failed += len(unanswered)
        return load_ended

    async def put(self, seq: int, scheduled: float) -> None:
        """One vote; its latency to the 202 counts from its scheduled time."""
        article = self.articles[seq % len(self.articles)]
        self.sent_per_article[article] += 1
        vote = self.api.vote(self.tokens[seq // len(self.articles)], article, "love")
        try:
            async with self.client.request(
                vote.method, vote.url, data=vote.body, headers=dict(vote.headers)
            ) as response:
                await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError):
            self.result.failed += 1
            return
        acked_at = time.perf_counter()
        if status != 202:
            self.result.failed += 1
            return
        self.result.accepted += 1
        self.result.put_hist.record_value(max(int((acked_at - scheduled) * 1e6), 1))
        expected = self.start_totals[article] + self.sent_per_article[article]
        self.watch.expect(article, expected, acked_at)


def latency_table(results: list[tuple[str, LatencyResult]]) -> str:
    """A plain-text table of open-loop runs: one line per load level."""
    head = (
        f"{'load':<10}{'method':<7}{'rate/s':>9}{'got/s':>9}"
        f"{'p50':>9}{'p90':>9}{'p99':>9}{'p99.9':>9}{'max':>9}"
        f"{'PUT p99':>9}{'lag max':>9}{'fail':>6}{'unseen':>7}"
    )
    lines = [head + "   (ms: 202 → tally visible; unseen recorded at the time waited)"]
    for label, r in results:
        v = summary_ms(r.visible_hist)
        p = summary_ms(r.put_hist)
        lag = f"{r.max_lag:.0f}" if r.max_lag is not None else "n/a"
        lines.append(
            f"{label:<10}{r.method:<7}{r.target_rate:>9.0f}{r.achieved_rate:>9.0f}"
            f"{v['p50']:>9.1f}{v['p90']:>9.1f}{v['p99']:>9.1f}{v['p99.9']:>9.1f}{v['max']:>9.1f}"
            f"{p['p99']:>9.1f}{lag:>9}{r.failed:>6}{r.unseen:>7}"
        )
    return "\n".join(lines)
