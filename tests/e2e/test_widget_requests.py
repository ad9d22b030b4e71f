"""What the browser sends for "open a news page with 3 bars, vote on 3 articles": the page on
a site's own origin, the reader and ingest on two others, as in production. Votes share one
URL, so one CORS preflight covers them all; a new reader's token request is a simple
request; a page view reads every tally in one public read and nothing private."""

from __future__ import annotations

import httpx
from playwright.sync_api import BrowserContext, Request

from deploy.local.redis import RedisServer
from tests.e2e.bars import (
    Stack,
    button,
    expect_state,
    news_page,
    page_token,
    seed,
    stream_ids,
    wait_for_server,
    wait_in_page,
)
from tests.e2e.site import NewsSite
from tests.support import metric_sum

ARTICLES = ("rq-3", "rq-1", "rq-2")


def preflights(url: str) -> float:
    """CORS preflights a service has answered (OPTIONS requests), now."""
    return metric_sum(
        httpx.get(f"{url}/metrics").text, "reactions_http_requests_total", {"method": "OPTIONS"}
    )


def test_three_votes_on_a_page_of_three_bars_cost_one_preflight(
    context: BrowserContext, stack: Stack, site: NewsSite
) -> None:
    stories = "".join(
        f'<article><h2>Story {a}</h2><reaction-bar article="{a}"></reaction-bar></article>'
        for a in ARTICLES
    )
    url = site.put("/news", news_page(stack, stories))
    seen: list[Request] = []
    context.on("request", lambda request: seen.append(request))
    ingest_before, reader_before = preflights(stack.ingest.url), preflights(stack.reader.url)

    page = context.new_page()
    page.goto(url)
    for article in ARTICLES:
        expect_state(page, article, "Like", pressed=False, count="0")
    # Clicked in quick succession: the second and third votes are asked for while the
    # first one's preflight is still out.
    for article in ARTICLES:
        button(page, article, "Like").click()
        expect_state(page, article, "Like", pressed=True, count="1")
    token = page_token(page)
    for article in ARTICLES:
        wait_for_server(stack, token, article, "like", 1)
    wait_in_page(
        page,
        lambda: (
            sum(r.method == "POST" and r.url.endswith("/v1/votes") for r in seen) == 3
            and all(r.response() is not None for r in seen if r.url.endswith("/v1/votes"))
            and any("/v1/stream?" in r.url for r in seen)
        ),
        what="the three votes' answers and the page's stream",
    )

    ingest_preflights = preflights(stack.ingest.url) - ingest_before
    reader_preflights = preflights(stack.reader.url) - reader_before
    # Made by the widget (not the browser's background revalidations of cached bodies).
    requests = [(r.method, r.url.split("?")[0]) for r in seen if r.resource_type != "other"]
    print(f"\nbrowser requests ({len(requests)}):", *requests, sep="\n  ")
    print(f"preflights answered: ingest {ingest_preflights:g}, reader {reader_preflights:g}")

    def count(method: str, path: str) -> int:
        return sum(m == method and u.endswith(path) for m, u in requests)

    # The token's request has no header or body: a simple request, no preflight. The three
    # votes share one URL: one preflight, cached for the rest. The tallies are public.
    assert ingest_preflights == 1
    assert reader_preflights == 0
    assert count("POST", "/v1/readers") == 1
    assert count("POST", "/v1/votes") == 3
    assert count("GET", "/v1/reactions") == 1  # one bulk read for the three bars
    assert count("GET", "/v1/config") == 1
    assert count("GET", "/v1/stream") == 1  # live counts: one stream for the page's bars
    assert not [u for _, u in requests if "/v1/me/" in u]
    assert len(requests) == 9, requests  # + the page and widget.js; preflights not shown


def test_a_page_of_long_ids_is_read_in_urls_a_cdn_takes(
    context: BrowserContext, stack: Stack, site: NewsSite, redis_server: RedisServer
) -> None:
    """60 bars whose ids have the 128 characters the contract allows: one read of them all
    would be a URL of 7.8 KB, near the 8 KB many CDNs and proxies take at most. The widget
    splits the page's reads and streams by length too, and every bar gets its counts."""
    ids = [f"long-{i:02d}-".ljust(128, "x") for i in range(60)]
    for n, article in enumerate(ids, start=1):
        seed(redis_server.url, article, {"like": n})
    stories = "".join(f'<reaction-bar article="{a}"></reaction-bar>' for a in ids)
    url = site.put("/long-ids", news_page(stack, stories))
    seen: list[str] = []
    context.on("request", lambda request: seen.append(request.url))
    page = context.new_page()
    page.set_viewport_size({"width": 1280, "height": 20000})  # every bar in view at once
    page.goto(url)
    for n, article in enumerate(ids, start=1):
        expect_state(page, article, "Like", pressed=False, count=str(n))
    wait_in_page(page, lambda: len(stream_ids(seen)) == 2, what="the page's two streams")
    reads = [u for u in seen if "/v1/reactions?" in u]
    assert len(reads) == 2, reads
    assert all(len(u) < 6200 for u in reads + [u for u in seen if "/v1/stream?" in u])
    assert sorted(a for ids_ in stream_ids(seen) for a in ids_) == ids
