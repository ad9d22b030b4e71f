"""The widget in a real browser (Debian's Chromium through Playwright) against the real stack:
ingest → Kafka → aggregator → Redis → reader, with the page on the reader's origin and
ingest on another port (CORS), as on a news site."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    Locator,
    Page,
    Route,
    expect,
    sync_playwright,
)

from deploy.local.client import SyncVoteClient
from deploy.local.kafka import KafkaBroker
from deploy.local.process import free_port
from deploy.local.redis import RedisServer
from deploy.local.services import Service, service_env
from tests.support import wait_until

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 30_000

expect.set_options(timeout=TIMEOUT_MS)


@dataclass
class Stack:
    ingest: Service
    reader: Service


@pytest.fixture(scope="module")
def stack(
    kafka: KafkaBroker, redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """Ingest, aggregator and reader on free ports, shared by this module's tests."""
    topic = f"widget-{uuid.uuid4().hex[:10]}"
    ports = {name: free_port() for name in ("ingest", "aggregator", "reader")}
    env = service_env(
        kafka_bootstrap=kafka.bootstrap,
        redis_url=redis_server.url,
        topic=topic,
        partitions=4,
        ingest_port=ports["ingest"],
        overrides={"REACTIONS_PUBLIC_INGEST_URL": f"http://127.0.0.1:{ports['ingest']}"},
    )
    logs = tmp_path_factory.mktemp("widget-stack")
    services = {name: Service(name, port, env, logs / name) for name, port in ports.items()}
    try:
        for service in services.values():
            service.start()
        yield Stack(services["ingest"], services["reader"])
    finally:
        for service in reversed(list(services.values())):
            service.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium", headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    context = browser.new_context(viewport={"width": 1000, "height": 900})
    yield context
    context.close()


def bar_page(context: BrowserContext, stack: Stack, article: str) -> Page:
    """The demo page served by the reader, its main bar showing `article`."""
    page = context.new_page()
    page.goto(f"{stack.reader.url}/demo?article={article}")
    return page


def button(page: Page, article: str, label: str) -> Locator:
    """The reaction's button: its accessible name is the label, then the count."""
    name = re.compile(rf"^{label} ")
    return page.locator(f'reaction-bar[article="{article}"]').get_by_role("button", name=name)


def expect_state(page: Page, article: str, label: str, *, pressed: bool, count: str) -> None:
    target = button(page, article, label)
    expect(target).to_have_attribute("aria-pressed", "true" if pressed else "false")
    expect(target.locator(".n")).to_have_text(count)


def reader_id(page: Page) -> str:
    value = page.evaluate("localStorage.getItem('reactions.reader-id')")
    assert isinstance(value, str) and re.fullmatch(r"[A-Za-z0-9._~-]{1,64}", value)
    return value


def server_tally(stack: Stack, article: str, user_id: str) -> dict[str, object]:
    with SyncVoteClient(reader_url=stack.reader.url) as votes:
        body: dict[str, object] = votes.tally(article, user_id).json()
    return body


def wait_for_server(stack: Stack, article: str, user_id: str, mine: str | None, count: int) -> None:
    """Until the pipeline has applied the browser's vote: its own choice and the total."""
    wait_until(
        lambda: (
            (t := server_tally(stack, article, user_id))["mine"] == mine and t["total"] == count
        ),
        timeout=60,
        what=f"{article}: mine={mine} total={count}",
    )


def test_love_presses_and_counts_then_a_second_click_clears(
    context: BrowserContext, stack: Stack
) -> None:
    page = bar_page(context, stack, "w-love")
    expect_state(page, "w-love", "Love", pressed=False, count="0")
    button(page, "w-love", "Love").click()
    expect_state(page, "w-love", "Love", pressed=True, count="1")
    user = reader_id(page)
    wait_for_server(stack, "w-love", user, "love", 1)
    expect_state(page, "w-love", "Love", pressed=True, count="1")

    button(page, "w-love", "Love").click()
    expect_state(page, "w-love", "Love", pressed=False, count="0")
    wait_for_server(stack, "w-love", user, None, 0)
    page.reload()
    expect_state(page, "w-love", "Love", pressed=False, count="0")


def test_another_reaction_moves_the_vote(context: BrowserContext, stack: Stack) -> None:
    page = bar_page(context, stack, "w-move")
    button(page, "w-move", "Love").click()
    expect_state(page, "w-move", "Love", pressed=True, count="1")
    button(page, "w-move", "Angry").click()
    expect_state(page, "w-move", "Angry", pressed=True, count="1")
    expect_state(page, "w-move", "Love", pressed=False, count="0")
    wait_for_server(stack, "w-move", reader_id(page), "angry", 1)
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
        assert reader_id(first) != reader_id(second)


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
    wait_for_server(stack, "w-keys", reader_id(page), None, 0)


def test_an_ingest_failure_rolls_the_optimistic_count_back(
    context: BrowserContext, stack: Stack
) -> None:
    page = bar_page(context, stack, "w-fail")
    held: list[Route] = []
    page.route(
        f"{stack.ingest.url}/v1/articles/**",
        lambda route: held.append(route) if route.request.method == "PUT" else route.continue_(),
    )
    expect_state(page, "w-fail", "Sad", pressed=False, count="0")
    button(page, "w-fail", "Sad").click()
    expect_state(page, "w-fail", "Sad", pressed=True, count="1")  # optimistic
    wait_until(lambda: page.evaluate("1") == 1 and bool(held), what="the held PUT")
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
    wait_until(lambda: page.evaluate("1") == 1 and bool(held), what="the second held PUT")
    held.pop().fulfill(
        status=429,
        headers={"Access-Control-Allow-Origin": "*", "Retry-After": "1"},
        content_type="application/json",
        body='{"error": {"code": "rate_limited", "message": "slow down"}}',
    )
    expect_state(page, "w-fail", "Sad", pressed=False, count="0")
    expect(message).to_contain_text("wait a moment")
    assert server_tally(stack, "w-fail", reader_id(page))["total"] == 0


def sse_clients(stack: Stack) -> float:
    text = httpx.get(f"{stack.reader.url}/metrics").text
    match = re.search(r"^reactions_reader_sse_clients (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else -1


def test_demo_page_loads_all_bars_in_one_request_and_looks_right(
    browser: Browser, stack: Stack
) -> None:
    seed = {
        "demo-night-market": {"love": 14, "wow": 6, "like": 23, "angry": 3, "funny": 2},
        "demo-libraries-heatwave": {"like": 9, "love": 4},
        "demo-promotion-penalty": {"funny": 5, "like": 12, "angry": 2},
        "demo-bus-fares": {"like": 7, "dislike": 3},
        "demo-cathedral-owl": {"wow": 11, "love": 8},
    }
    with SyncVoteClient(stack.ingest.url, stack.reader.url) as votes:
        for article, reactions in seed.items():
            n = 0
            for reaction, count in reactions.items():
                for _ in range(count):
                    n += 1
                    assert votes.set(article, f"seed-{n}", reaction).status_code == 202
        wait_until(
            lambda: votes.tally("demo-night-market").json()["total"] == 48,
            timeout=60,
            what="the seeded tallies",
        )
    wait_until(lambda: sse_clients(stack) == 0, what="earlier tests' streams to close")

    with browser.new_context(viewport={"width": 900, "height": 1200}) as context:
        page = context.new_page()
        calls: list[str] = []
        page.on("request", lambda request: calls.append(request.url))
        page.goto(f"{stack.reader.url}/demo")
        expect_state(page, "demo-night-market", "Like", pressed=False, count="23")
        expect_state(page, "demo-cathedral-owl", "Wow", pressed=False, count="11")
        bulk = [u for u in calls if "/v1/reactions?" in u]
        assert len(bulk) == 1, bulk  # five bars, one bulk request
        assert all(a in bulk[0] for a in seed)
        assert sum("/v1/config" in u for u in calls) == 1
        wait_until(lambda: sse_clients(stack) == 5, what="one stream per article")

        button(page, "demo-night-market", "Love").click()
        expect_state(page, "demo-night-market", "Love", pressed=True, count="15")
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "demo.png"), full_page=True)

        # A bar that leaves the page closes its stream.
        page.evaluate("document.querySelector('reaction-bar[article=demo-bus-fares]').remove()")
        wait_until(lambda: sse_clients(stack) == 4, what="the removed bar's stream to close")

    with browser.new_context(color_scheme="dark") as dark:
        page = dark.new_page()
        page.goto(f"{stack.reader.url}/demo")
        like = button(page, "demo-bus-fares", "Like")
        expect(like.locator(".n")).to_have_text("7")
        background = like.evaluate("b => getComputedStyle(b).backgroundColor")
        assert background == "rgb(21, 27, 35)"  # the dark theme's --rx-bg
        page.screenshot(path=str(ARTIFACTS / "demo-dark.png"), full_page=True)
