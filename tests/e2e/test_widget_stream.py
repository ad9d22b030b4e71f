"""One live stream per page, in Chromium against the real stack: a long news page of 50 bars,
two in view at a time, holds one stream for the bars in or near the viewport and moves it as
the reader scrolls; a hidden tab holds none; streams that fail give way to polling the
public bulk read with backoff, and the stream comes back."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any, Final

from playwright.sync_api import BrowserContext, Page, Request, Route, expect

from deploy.local.client import MintedTokens, SyncVoteClient
from tests.e2e.bars import (
    Stack,
    button,
    expect_state,
    news_page,
    open_streams,
    public_tally,
    stream_ids,
    wait_in_page,
)
from tests.e2e.site import NewsSite
from tests.support import wait_until

BARS: Final = 50
SPACING_PX: Final = 500  # from one bar to the next: two in the 900 px viewport
STEP_PX: Final = 800  # one scroll: every bar is wholly in view at some step
LIVE_BOUND_S: Final = 10.0  # an outside vote shows on the bar within this
STREAM: Final = re.compile(r"/v1/stream\?ids=")
BULK: Final = re.compile(r"/v1/reactions\?ids=")

# The page's EventSources: opened in all, open now, and the most open at once.
COUNT_STREAMS: Final = """
(() => {
  const Native = window.EventSource;
  const live = (window.streamCount = { opened: 0, open: 0, most: 0 });
  const gone = (es) => {
    if (!es.gone) live.open--;
    es.gone = true;
  };
  window.EventSource = class extends Native {
    constructor(url, init) {
      super(url, init);
      live.opened++;
      live.most = Math.max(live.most, ++live.open);
      this.addEventListener("error", () => this.readyState === Native.CLOSED && gone(this));
    }
    close() {
      gone(this);
      super.close();
    }
  };
})();
"""
# The articles whose bar is wholly inside the viewport, and (`near`) those within one
# viewport above or below it: what the widget's stream should carry.
BARS_BY_PLACE: Final = """(near) => [...new Set([...document.querySelectorAll("reaction-bar")]
  .filter((b) => {
    const r = b.getBoundingClientRect();
    if (near) return r.bottom > -innerHeight && r.top < 2 * innerHeight; // overlaps the margin
    return r.top >= 0 && r.bottom <= innerHeight;
  })
  .map((b) => b.getAttribute("article")))].sort()"""
# What `document.visibilityState` says, and the event, as when the reader switches tabs.
SET_VISIBILITY: Final = """(state) => {
  Object.defineProperty(document, "visibilityState", { configurable: true, get: () => state });
  document.dispatchEvent(new Event("visibilitychange"));
}"""


def long_page(stack: Stack, articles: list[str]) -> str:
    """A news page of stories `SPACING_PX` apart, a bar under each headline."""
    return news_page(
        stack,
        "".join(
            f'<article style="height:{SPACING_PX}px"><h2>Story {a}</h2>'
            f'<reaction-bar article="{a}"></reaction-bar></article>'
            for a in articles
        ),
    )


class Connections:
    """The browser's requests of a page, and the connections that answered the reader's
    (Chromium's `connectionId`, through the DevTools protocol)."""

    def __init__(self, page: Page, reader_url: str) -> None:
        self.urls: list[str] = []
        self.ids: set[int] = set()
        page.on("request", lambda request: self.urls.append(request.url))
        cdp = page.context.new_cdp_session(page)
        cdp.on("Network.responseReceived", lambda event: self._seen(event, reader_url))
        cdp.send("Network.enable")

    def _seen(self, event: dict[str, Any], reader_url: str) -> None:
        if event["response"]["url"].startswith(reader_url):
            self.ids.add(int(event["response"]["connectionId"]))

    def streams(self) -> list[list[str]]:
        """The articles of each stream the page asked for, in order."""
        return stream_ids(self.urls)


def count_streams(page: Page) -> dict[str, int]:
    """The page's EventSources, as COUNT_STREAMS counts them."""
    counts: dict[str, int] = page.evaluate("({...window.streamCount})")
    return counts


def settled(page: Page, stack: Stack) -> bool:
    """One stream open in the page and at the reader (which notices a closed one within 5 s)."""
    return count_streams(page)["open"] == 1 and open_streams(stack) == 1


def expect_count(page: Page, article: str, label: str, count: str) -> None:
    """The bar shows `count` for `label` within LIVE_BOUND_S."""
    counter = button(page, article, label).locator(".n")
    expect(counter).to_have_text(count, timeout=LIVE_BOUND_S * 1000)


def test_a_long_page_streams_the_bars_near_the_viewport_as_the_reader_scrolls(
    context: BrowserContext, stack: Stack, site: NewsSite, tokens: MintedTokens
) -> None:
    articles = [f"long-{i:02d}" for i in range(BARS)]
    far = articles[-1]
    url = site.put("/long", long_page(stack, articles))
    wait_until(lambda: open_streams(stack) == 0, what="earlier tests' streams to close")
    context.add_init_script(COUNT_STREAMS)
    page = context.new_page()
    seen = Connections(page, stack.reader.url)
    with SyncVoteClient(stack.ingest.url, stack.reader.url, tokens=tokens) as votes:
        assert votes.set(far, "a.long-far", "love").status_code == 202
        wait_until(lambda: public_tally(stack, far)["total"] == 1, what="the far bar's vote")

        page.goto(url)
        wait_until(lambda: settled(page, stack), what="the page's stream")
        # One stream, for the bars in or near the viewport.
        near = page.evaluate(BARS_BY_PLACE, True)
        assert seen.streams() == [near] and far not in near, seen.streams()
        # A bar far down the page has its count from the bulk read.
        expect_state(page, far, "Love", pressed=False, count="1")
        load = len(seen.ids)
        assert load <= 3, seen.ids

        shown: list[str] = []
        slowest = 0.0
        steps = 0
        bottom = page.evaluate("document.documentElement.scrollHeight - innerHeight")
        for top in [*range(0, bottom, STEP_PX), bottom]:
            steps += 1
            page.evaluate(f"scrollTo(0, {top})")
            arrived = [a for a in page.evaluate(BARS_BY_PLACE, False) if a not in shown]
            sent = time.monotonic()
            for article in arrived:
                assert votes.set(article, f"a.{article}", "wow").status_code == 202
            for article in arrived:
                expect_count(page, article, "Wow", "1")
            slowest = max(slowest, time.monotonic() - sent)
            shown += arrived
    assert shown == articles  # every bar came into view, in order, and showed its vote live

    wait_until(lambda: settled(page, stack), what="one stream after the scroll")
    counts = count_streams(page)
    print(
        f"\n{BARS} bars, {steps} scroll steps: page load {load} connections to the reader and "
        f"1 stream; whole scroll {counts['opened']} streams opened, at most {counts['most']} "
        f"open at once, {len(seen.ids)} connections; slowest vote on screen {slowest:.2f} s; "
        f"articles per stream {[len(ids) for ids in seen.streams()]}"
    )
    # The stream follows the viewport, never one per bar, and one at a time.
    assert counts["opened"] == len(seen.streams()) < steps
    assert counts["most"] == 1
    # Three viewports of bars at most: 2700 px / 500 px, plus one cut at each edge.
    assert all(len(ids) <= 7 and ids == sorted(ids) for ids in seen.streams()), seen.streams()
    assert seen.streams()[-1] == page.evaluate(BARS_BY_PLACE, True)


def test_a_hidden_tab_holds_no_stream_and_catches_up_when_shown(
    context: BrowserContext, stack: Stack, site: NewsSite, tokens: MintedTokens
) -> None:
    articles = [f"hidden-{i}" for i in range(10)]
    url = site.put("/hidden", long_page(stack, articles))
    wait_until(lambda: open_streams(stack) == 0, what="earlier tests' streams to close")
    context.add_init_script(COUNT_STREAMS)
    page = context.new_page()
    seen = Connections(page, stack.reader.url)
    page.goto(url)
    expect_state(page, articles[0], "Sad", pressed=False, count="0")
    wait_until(lambda: settled(page, stack), what="the page's stream")

    page.evaluate(SET_VISIBILITY, "hidden")
    assert count_streams(page)["open"] == 0  # closed at once, in the event
    wait_until(lambda: open_streams(stack) == 0, what="the reader to see the stream go")
    with SyncVoteClient(stack.ingest.url, stack.reader.url, tokens=tokens) as votes:
        assert votes.set(articles[0], "a.hidden-reader", "sad").status_code == 202
    wait_until(lambda: public_tally(stack, articles[0])["total"] == 1, what="the vote applied")
    # Nothing reaches a hidden page: no stream, no polling.
    assert button(page, articles[0], "Sad").locator(".n").text_content() == "0"
    assert len(seen.streams()) == 1

    page.evaluate(SET_VISIBILITY, "visible")
    # The new stream's first tallies are the current ones: the vote made meanwhile shows.
    expect_count(page, articles[0], "Sad", "1")
    wait_until(lambda: settled(page, stack), what="the stream back")
    assert seen.streams() == [page.evaluate(BARS_BY_PLACE, True)] * 2


class FailingStreams:
    """Makes the page's streams fail, each attempt in one of the ways a stream fails: a
    network error, a 503 (as at the reader's stream cap), an answer without any event."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.attempts = 0
        page.route(STREAM, self._refuse)

    def _refuse(self, route: Route) -> None:
        self.attempts += 1
        kind = self.attempts % 3
        if kind == 1:
            route.abort()
        elif kind == 2:
            route.fulfill(
                status=503,
                headers={"Access-Control-Allow-Origin": "*", "Retry-After": "5"},
                content_type="application/json",
                body='{"error": {"code": "too_many_streams", "message": "retry"}}',
            )
        else:
            route.fulfill(
                headers={"Access-Control-Allow-Origin": "*"},
                content_type="text/event-stream",
                body="retry: 500\n\n",
            )

    def stop(self) -> None:
        """Let streams through from now on."""
        self.page.unroute(STREAM, self._refuse)


def test_failing_streams_fall_back_to_polling_with_backoff_then_stream_again(
    context: BrowserContext, stack: Stack, site: NewsSite, tokens: MintedTokens
) -> None:
    articles = [f"poll-{i}" for i in range(3)]
    url = site.put("/poll", long_page(stack, articles))
    wait_until(lambda: open_streams(stack) == 0, what="earlier tests' streams to close")
    page = context.new_page()
    failing = FailingStreams(page)
    # When each stream attempt and each bulk read (the widget's own, not a revalidation) went.
    streams: list[float] = []
    polls: list[float] = []

    def record(request: Request) -> None:
        if STREAM.search(request.url):
            streams.append(time.monotonic())
        elif BULK.search(request.url) and request.resource_type == "fetch":
            polls.append(time.monotonic())

    page.on("request", record)
    page.goto(url)
    expect_state(page, articles[0], "Angry", pressed=False, count="0")

    def until(check: Callable[[], bool], what: str) -> None:
        wait_in_page(page, check, timeout=60, what=what)

    until(lambda: len(polls) >= 2, "the first poll")  # the page's bulk read, then a poll
    # Three attempts (a second or two apart), then polling.
    attempts = [t for t in streams if t < polls[1] - 0.5]
    assert len(attempts) == 3, streams
    assert polls[1] - attempts[-1] > 1.5
    with SyncVoteClient(stack.ingest.url, stack.reader.url, tokens=tokens) as votes:
        assert votes.set(articles[0], "a.poll-1", "angry").status_code == 202
        wait_until(lambda: public_tally(stack, articles[0])["total"] == 1, what="the vote")
        until(lambda: len(polls) >= 3 and failing.attempts >= 5, "the second poll's attempt")
        failing.stop()
        expect_count(page, articles[0], "Angry", "1")  # by polling: every stream failed

        # The next poll tries a stream again, which now works; polling stops.
        until(lambda: len(polls) >= 4 and open_streams(stack) == 1, "the stream back")
        first, second = polls[2] - polls[1], polls[3] - polls[2]
        print(f"\npolls after the streams failed: {[round(t - polls[0], 1) for t in polls]} s")
        assert 3.0 < first < 5.5 and 6.0 < second < 10.5  # 4 s, then 8 s, each ±20 %
        assert votes.set(articles[1], "a.poll-2", "angry").status_code == 202
        expect_count(page, articles[1], "Angry", "1")
    assert len(polls) == 4  # the vote came by the stream, long before a poll was due
