"""What a site gets from the reader besides the widget, in Chromium: the bar as server-rendered
HTML (seen without JavaScript, taken over by the widget), counts written as the browser's
Intl writes them, and the widget pinned at its versioned URL with Subresource Integrity."""

from __future__ import annotations

import random
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, expect
from redis import Redis

from deploy.local.redis import RedisServer
from services.reader.locale import COMPACT, compact_count
from shared.reactions import DEFAULT_TYPES
from shared.tallies import counts_key
from tests.e2e.bars import Stack
from tests.e2e.site import NewsSite, bar_html


@pytest.fixture
def seeded(redis_server: RedisServer) -> Iterator[None]:
    redis = Redis.from_url(redis_server.url)
    try:
        redis.hset(counts_key("html-1"), mapping={"like": 1234, "love": 3, "@fence": "0:7"})
        yield
    finally:
        redis.close()


@pytest.mark.usefixtures("seeded")
def test_a_reader_without_javascript_sees_the_counts(
    browser: Browser, stack: Stack, site: NewsSite
) -> None:
    markup = bar_html(stack, "html-1", **{"hide-counts-below": 2})
    with browser.new_context(java_script_enabled=False) as context:
        page = site.open(context, f'<reaction-bar article="html-1">{markup}</reaction-bar>')
        bar = page.get_by_role("group", name="Reactions")
        expect(bar).to_be_visible()
        counts = page.locator("reaction-bar .rx")
        expect(counts).to_have_count(len(DEFAULT_TYPES))
        expect(counts.first).to_have_text("👍 Like 1.2K")
        expect(counts.nth(2)).to_have_text("❤️ Love 3")
        expect(counts.nth(1)).to_have_text("👎 Dislike")  # 0 is below the threshold
        height = bar.bounding_box()
        assert height is not None and 20 < height["height"] < 80  # one row of pills


@pytest.mark.usefixtures("seeded")
def test_the_widget_takes_the_bar_over_with_the_same_counts(
    context: BrowserContext, stack: Stack, site: NewsSite
) -> None:
    reader, ingest = stack.reader.url, stack.ingest.url
    page = site.open(
        context,
        f'<reaction-bar article="html-1" reader="{reader}" ingest="{ingest}">'
        f"{bar_html(stack, 'html-1')}</reaction-bar>",
        f'<script src="{reader}/widget.js" async></script>',
    )
    like = page.get_by_role("button", name="Like 1.2K")
    expect(like).to_be_visible()  # a button now, with the count the markup showed
    expect(page.get_by_role("button")).to_have_count(len(DEFAULT_TYPES))


def test_counts_are_written_as_chromium_writes_them(context: BrowserContext) -> None:
    rng = random.Random(20260101)
    numbers = sorted(
        {*range(0, 1100, 7), *(10**k + d for k in range(3, 17) for d in (-51, -1, 0, 1, 49, 50))}
        | {rng.randrange(10 ** rng.randrange(1, 16)) for _ in range(2000)}
    )
    page = context.new_page()
    for lang in COMPACT:
        browser_says: list[str] = page.evaluate(
            "([lang, numbers]) => numbers.map("
            "n => new Intl.NumberFormat(lang, {notation: 'compact'}).format(n))",
            [lang, numbers],
        )
        ours = [compact_count(n, lang) for n in numbers]
        wrong = [(n, b, o) for n, b, o in zip(numbers, browser_says, ours, strict=True) if b != o]
        assert not wrong, f"{lang}: {len(wrong)} differ, e.g. {wrong[:5]}"


def test_the_pinned_widget_runs_and_a_wrong_integrity_is_refused(
    browser: Browser, stack: Stack, site: NewsSite
) -> None:
    reader, ingest = stack.reader.url, stack.ingest.url
    pinned = httpx.get(f"{reader}/v1/widget", timeout=10).json()
    bar = f'<reaction-bar article="html-2" reader="{reader}" ingest="{ingest}"></reaction-bar>'

    def script(integrity: str) -> str:
        return (
            f'<script src="{reader}{pinned["path"]}" integrity="{integrity}" '
            'crossorigin="anonymous" async></script>'
        )

    with browser.new_context() as context:
        page = site.open(context, bar, script(pinned["integrity"]))
        expect(page.get_by_role("button")).to_have_count(len(DEFAULT_TYPES))

    wrong = "sha384-" + "A" * 64
    with browser.new_context() as context:
        page = context.new_page()
        with page.expect_console_message(
            lambda m: "integrity" in m.text and "blocked" in m.text, timeout=30_000
        ):
            page = site.open(context, bar, script(wrong), page)
        assert page.evaluate("customElements.get('reaction-bar') === undefined")
