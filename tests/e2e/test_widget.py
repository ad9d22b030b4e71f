"""The widget in a real browser (Debian's Chromium through Playwright) against the real stack:
ingest → Kafka → aggregator → Redis → reader, with the page on the reader's origin and
ingest on another port (CORS), as on a news site. The stack and the browser are the
package's (conftest.py); the token flow and the counts' cacheability are in
test_widget_identity.py and test_widget_requests.py."""

from __future__ import annotations

import re
from pathlib import Path

from playwright.sync_api import Browser, BrowserContext, Route, expect

from deploy.local.client import MintedTokens, SyncVoteClient
from deploy.local.redis import RedisServer
from tests.e2e.bars import (
    Stack,
    bar_page,
    button,
    expect_state,
    open_streams,
    own_vote,
    page_token,
    seed,
    stream_ids,
    wait_for_server,
    wait_in_page,
    widget_script,
)
from tests.e2e.site import NewsSite
from tests.support import wait_until

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def test_love_presses_and_counts_then_a_second_click_clears(
    context: BrowserContext, stack: Stack
) -> None:
    page = bar_page(context, stack, "w-love")
    expect_state(page, "w-love", "Love", pressed=False, count="0")
    button(page, "w-love", "Love").click()
    expect_state(page, "w-love", "Love", pressed=True, count="1")
    token = page_token(page)
    wait_for_server(stack, token, "w-love", "love", 1)
    expect_state(page, "w-love", "Love", pressed=True, count="1")

    button(page, "w-love", "Love").click()
    expect_state(page, "w-love", "Love", pressed=False, count="0")
    wait_for_server(stack, token, "w-love", None, 0)
    page.reload()
    expect_state(page, "w-love", "Love", pressed=False, count="0")


def test_another_reaction_moves_the_vote(context: BrowserContext, stack: Stack) -> None:
    page = bar_page(context, stack, "w-move")
    button(page, "w-move", "Love").click()
    expect_state(page, "w-move", "Love", pressed=True, count="1")
    button(page, "w-move", "Angry").click()
    expect_state(page, "w-move", "Angry", pressed=True, count="1")
    expect_state(page, "w-move", "Love", pressed=False, count="0")
    wait_for_server(stack, page_token(page), "w-move", "angry", 1)
    page.reload()  # the reader's choice comes back from the server
    expect_state(page, "w-move", "Angry", pressed=True, count="1")
    expect_state(page, "w-move", "Love", pressed=False, count="0")


def test_another_reader_sees_the_count_change_live(browser: Browser, stack: Stack) -> None:
    with browser.new_context() as first_ctx, browser.new_context() as second_ctx:
        first = bar_page(first_ctx, stack, "w-live")
        second = bar_page(second_ctx, stack, "w-live")
        expect_state(second, "w-live", "Wow", pressed=False, count="0")
        button(first, "w-live", "Wow").click()
        # No reload: the count arrives over the second page's EventSource.
        expect_state(second, "w-live", "Wow", pressed=False, count="1")
        button(second, "w-live", "Wow").click()
        expect_state(first, "w-live", "Wow", pressed=True, count="2")
        first_reader = own_vote(stack, page_token(first), "w-live")["reader_id"]
        assert first_reader != own_vote(stack, page_token(second), "w-live")["reader_id"]


def test_the_bar_works_by_keyboard_alone(context: BrowserContext, stack: Stack) -> None:
    page = bar_page(context, stack, "w-keys")
    expect_state(page, "w-keys", "Like", pressed=False, count="0")
    focused = "document.activeElement.shadowRoot?.activeElement?.dataset.reaction ?? null"
    page.keyboard.press("Tab")
    assert page.evaluate(focused) == "like"
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    assert page.evaluate(focused) == "love"
    outline = page.evaluate(
        "getComputedStyle(document.activeElement.shadowRoot.activeElement).outlineStyle"
    )
    assert outline not in ("none", "")  # focus is visible
    page.keyboard.press("Enter")
    expect_state(page, "w-keys", "Love", pressed=True, count="1")
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Space")  # dislike moves the vote
    expect_state(page, "w-keys", "Dislike", pressed=True, count="1")
    expect_state(page, "w-keys", "Love", pressed=False, count="0")
    page.keyboard.press("Space")  # and the same key again clears it
    expect_state(page, "w-keys", "Dislike", pressed=False, count="0")
    wait_for_server(stack, page_token(page), "w-keys", None, 0)


def test_an_ingest_failure_rolls_the_optimistic_count_back(
    context: BrowserContext, stack: Stack
) -> None:
    page = bar_page(context, stack, "w-fail")
    held: list[Route] = []
    page.route(
        f"{stack.ingest.url}/v1/votes",
        lambda route: held.append(route) if route.request.method == "POST" else route.continue_(),
    )
    expect_state(page, "w-fail", "Sad", pressed=False, count="0")
    button(page, "w-fail", "Sad").click()
    expect_state(page, "w-fail", "Sad", pressed=True, count="1")  # optimistic
    wait_in_page(page, lambda: bool(held), what="the held vote")
    held.pop().fulfill(
        status=503,
        headers={"Access-Control-Allow-Origin": "*", "Retry-After": "1"},
        content_type="application/json",
        body='{"error": {"code": "kafka_unavailable", "message": "retry"}}',
    )
    expect_state(page, "w-fail", "Sad", pressed=False, count="0")
    message = page.locator('reaction-bar[article="w-fail"]').get_by_role("status")
    expect(message).to_contain_text("couldn't be saved")

    button(page, "w-fail", "Sad").click()
    wait_in_page(page, lambda: bool(held), what="the second held vote")
    held.pop().fulfill(
        status=429,
        headers={"Access-Control-Allow-Origin": "*", "Retry-After": "1"},
        content_type="application/json",
        body='{"error": {"code": "rate_limited", "message": "slow down"}}',
    )
    expect_state(page, "w-fail", "Sad", pressed=False, count="0")
    expect(message).to_contain_text("wait a moment")
    assert own_vote(stack, page_token(page), "w-fail")["total"] == 0


def test_bars_that_could_not_load_load_once_the_reader_answers_again(
    context: BrowserContext, stack: Stack, site: NewsSite, redis_server: RedisServer
) -> None:
    """A page opened while the reader refuses (a deploy, a Redis failover) says so, then
    shows its bars by itself when the reader is back: no reload needed."""
    for i in range(3):
        seed(redis_server.url, f"w-back-{i}", {"love": 3})
    down = re.compile(r".*/v1/(config|reactions|stream)\b.*")
    page = context.new_page()
    page.route(
        down,
        lambda route: route.fulfill(
            status=503,
            headers={"Access-Control-Allow-Origin": "*", "Retry-After": "1"},
            content_type="application/json",
            body='{"error": {"code": "redis_unavailable", "message": "retry"}}',
        ),
    )
    body = "".join(f'<reaction-bar article="w-back-{i}"></reaction-bar>' for i in range(3))
    site.open(context, body, widget_script(stack), page=page)
    for i in range(3):
        message = page.locator(f'reaction-bar[article="w-back-{i}"]').get_by_role("status")
        expect(message).to_contain_text("unavailable")
    page.unroute(down)
    for i in range(3):
        expect_state(page, f"w-back-{i}", "Love", pressed=False, count="3")


def test_demo_page_loads_all_bars_in_one_request_and_looks_right(
    browser: Browser, stack: Stack, tokens: MintedTokens
) -> None:
    seed = {
        "demo-night-market": {"love": 14, "wow": 6, "like": 23, "angry": 3, "funny": 2},
        "demo-libraries-heatwave": {"like": 9, "love": 4},
        "demo-promotion-penalty": {"funny": 5, "like": 12, "angry": 2},
        "demo-bus-fares": {"like": 7, "dislike": 3},
        "demo-cathedral-owl": {"wow": 11, "love": 8},
    }
    with SyncVoteClient(stack.ingest.url, stack.reader.url, tokens=tokens) as votes:
        for article, reactions in seed.items():
            n = 0
            for reaction, count in reactions.items():
                for _ in range(count):
                    n += 1
                    assert votes.set(article, f"a.seed-{n}", reaction).status_code == 202
        wait_until(
            lambda: votes.tally("demo-night-market").json()["total"] == 48,
            timeout=60,
            what="the seeded tallies",
        )
    wait_until(lambda: open_streams(stack) == 0, what="earlier tests' streams to close")

    with browser.new_context(viewport={"width": 900, "height": 1200}) as context:
        page = context.new_page()
        calls: list[str] = []
        page.on("request", lambda request: calls.append(request.url))
        page.goto(f"{stack.reader.url}/demo")
        expect_state(page, "demo-night-market", "Like", pressed=False, count="23")
        expect_state(page, "demo-cathedral-owl", "Wow", pressed=False, count="11")
        bulk = [u for u in calls if "/v1/reactions?" in u]
        assert len(bulk) == 1, bulk  # five bars, one bulk request
        # The canonical URL: ids sorted, so every page with these bars shares a cache entry.
        assert bulk[0].endswith("/v1/reactions?ids=" + ",".join(sorted(seed))), bulk
        # A page view carries no identity: no token asked for, no own-votes read.
        assert not [u for u in calls if "/v1/readers" in u or "/v1/me/" in u], calls
        assert sum("/v1/config" in u for u in calls) == 1
        # The page's five bars are all near the viewport: one stream carries them.
        wait_in_page(
            page,
            lambda: bool(stream_ids(calls)) and open_streams(stack) == 1,
            what="the page's stream",
        )
        assert stream_ids(calls) == [sorted(seed)]

        button(page, "demo-night-market", "Love").click()
        expect_state(page, "demo-night-market", "Love", pressed=True, count="15")
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "demo.png"), full_page=True)

        # A bar that leaves the page leaves the stream: a new one without it replaces it.
        page.evaluate("document.querySelector('reaction-bar[article=demo-bus-fares]').remove()")
        wait_in_page(
            page,
            lambda: len(stream_ids(calls)) == 2,
            what="the stream without the removed bar",
        )
        assert stream_ids(calls)[1] == sorted(set(seed) - {"demo-bus-fares"})
        wait_until(lambda: open_streams(stack) == 1, what="the first stream to close")

    with browser.new_context(color_scheme="dark") as dark:
        page = dark.new_page()
        page.goto(f"{stack.reader.url}/demo")
        like = button(page, "demo-bus-fares", "Like")
        expect(like.locator(".n")).to_have_text("7")
        background = like.evaluate("b => getComputedStyle(b).backgroundColor")
        assert background == "rgb(21, 27, 35)"  # the dark theme's --rx-bg
        page.screenshot(path=str(ARTIFACTS / "demo-dark.png"), full_page=True)
