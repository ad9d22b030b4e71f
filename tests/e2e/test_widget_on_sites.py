"""How a site includes the widget, in Chromium: the bar as server-rendered HTML (seen without
JavaScript, taken over by the widget in place without moving anything), counts written as
the browser's Intl writes them, the widget as an ES module, pinned at its versioned URL with
Subresource Integrity, and on a page with a strict Content-Security-Policy."""

from __future__ import annotations

import random
import re
from typing import Final

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Route, expect

from deploy.local.client import MintedTokens, SyncVoteClient
from deploy.local.redis import RedisServer
from services.reader.locale import COMPACT, compact_count
from shared.reactions import DEFAULT_TYPES
from tests.e2e.bars import (
    Stack,
    button,
    expect_state,
    page_token,
    seed,
    stream_ids,
    wait_for_server,
    wait_in_page,
    widget_script,
)
from tests.e2e.site import NewsSite, bar_html
from tests.support import wait_until


@pytest.fixture
def seeded(redis_server: RedisServer) -> None:
    seed(redis_server.url, "html-1", {"like": 1234, "love": 3, "@fence": "0:7"})


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


# The page's layout shifts (the Layout Instability API), from its first paint on.
SHIFTS: Final = """
window.shifts = [];
new PerformanceObserver((list) => shifts.push(...list.getEntries().map((e) => e.value)))
  .observe({type: "layout-shift", buffered: true});
"""
# Where the bar and each of its reactions are drawn, in page coordinates.
BOXES: Final = """(bar) => [bar, ...bar.shadowRoot.querySelectorAll(".rx")].map((el) => {
  const r = el.getBoundingClientRect();
  return [r.x, r.y, r.width, r.height];
})"""


def frames(page: Page) -> None:
    """Until the browser has drawn two more frames (and so reported their layout shifts)."""
    page.evaluate("new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")


def test_the_widget_takes_the_bar_over_in_place_without_moving_it(
    context: BrowserContext,
    stack: Stack,
    site: NewsSite,
    tokens: MintedTokens,
    redis_server: RedisServer,
) -> None:
    seed(redis_server.url, "shift-1", {"like": 1234, "love": 3})
    context.add_init_script(SHIFTS)
    held: list[Route] = []
    context.route(f"{stack.reader.url}/widget.js", lambda route: held.append(route))
    requests: list[str] = []
    context.on("request", lambda request: requests.append(request.url))
    markup = bar_html(stack, "shift-1", **{"hide-counts-below": 2})
    page = site.open(
        context,
        f'<p>Before the bar.</p><reaction-bar article="shift-1">{markup}</reaction-bar>'
        "<p>After the bar.</p>",
        widget_script(stack),
        wait_until="domcontentloaded",  # the page's load waits for the held script
    )
    bar = page.locator("reaction-bar")
    expect(bar.locator(".rx").first).to_have_text("👍 Like 1.2K")
    wait_in_page(page, lambda: bool(held), what="the widget's request")
    frames(page)
    before = bar.evaluate(BOXES)
    assert page.evaluate("customElements.get('reaction-bar')") is None

    held.pop().continue_()  # the widget runs now
    expect(page.get_by_role("button")).to_have_count(len(DEFAULT_TYPES))
    like = page.get_by_role("button", name="Like 1.2K")  # a button now, the same count
    wait_in_page(
        page,
        lambda: stream_ids(requests) == [["shift-1"]],
        what="the bar's live stream",
    )
    frames(page)
    assert bar.evaluate(BOXES) == before  # the bar and each reaction where they were
    assert page.evaluate("shifts") == []
    # The counts under the threshold stay hidden, in the widget too.
    expect(page.get_by_role("button", name="Dislike", exact=True)).to_be_visible()

    # Taken over, not redrawn: the live counts arrive in the same markup.
    with SyncVoteClient(stack.ingest.url, stack.reader.url, tokens=tokens) as votes:
        for n in range(2):
            assert votes.set("shift-1", f"a.shift-{n}", "dislike").status_code == 202
    expect(page.get_by_role("button", name="Dislike 2")).to_be_visible()
    like.click()
    expect(like).to_have_attribute("aria-pressed", "true")


@pytest.mark.parametrize("module", [False, True], ids=["classic", "module"])
def test_counts_under_the_threshold_are_hidden_by_the_widget_alone(
    context: BrowserContext, stack: Stack, site: NewsSite, redis_server: RedisServer, module: bool
) -> None:
    seed(redis_server.url, "below-1", {"like": 12, "love": 4, "wow": 5})
    page = site.open(
        context,
        '<reaction-bar article="below-1" hide-counts-below="5"></reaction-bar>',
        widget_script(stack, module=module),
    )
    expect(page.get_by_role("button", name="Like 12")).to_be_visible()
    expect(page.get_by_role("button", name="Wow 5")).to_be_visible()
    expect(page.get_by_role("button", name="Love", exact=True)).to_be_visible()
    expect(page.get_by_role("button", name="Sad", exact=True)).to_be_visible()


def test_the_module_exports_the_element_and_defines_more_names(
    context: BrowserContext, stack: Stack, site: NewsSite
) -> None:
    module = f"{stack.reader.url}/widget.mjs"
    page = site.open(
        context,
        '<reaction-bar article="mod-1"></reaction-bar><story-reactions article="mod-1">'
        "</story-reactions>",
        f'<script type="module">import {{ ReactionBar, define }} from "{module}";'
        "window.same = customElements.get('reaction-bar') === ReactionBar;"
        "define('story-reactions');</script>",
    )
    # The module's base URLs are its own origin's: the reader, and ingest there too.
    expect(page.locator("reaction-bar").get_by_role("button")).to_have_count(7)
    expect(page.locator("story-reactions").get_by_role("button")).to_have_count(7)
    assert page.evaluate("same") is True


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


@pytest.mark.parametrize("form", ["classic", "module"])
def test_the_pinned_widget_runs_and_a_wrong_integrity_is_refused(
    browser: Browser, stack: Stack, site: NewsSite, form: str
) -> None:
    reader, ingest = stack.reader.url, stack.ingest.url
    info = httpx.get(f"{reader}/v1/widget", timeout=10).json()
    pinned = info if form == "classic" else info["module"]
    bar = f'<reaction-bar article="html-2" reader="{reader}" ingest="{ingest}"></reaction-bar>'

    def script(integrity: str) -> str:
        # README's snippets, "Pinning the widget with Subresource Integrity".
        kind = "async" if form == "classic" else 'type="module"'
        return (
            f'<script src="{reader}{pinned["path"]}"\n        integrity="{integrity}"\n'
            f'        crossorigin="anonymous" {kind}></script>'
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


def test_a_page_with_a_strict_content_security_policy(
    context: BrowserContext, stack: Stack, site: NewsSite
) -> None:
    reader, ingest = stack.reader.url, stack.ingest.url
    # The server-rendered bar's <style> is allowed by its hash, and no other inline style.
    style_hash = httpx.get(f"{reader}/v1/widget", timeout=10).json()["style_hash"]
    policy = (
        f"default-src 'self'; script-src {reader}; style-src 'self' '{style_hash}'; "
        f"connect-src {reader} {ingest}; require-trusted-types-for 'script'; "
        "object-src 'none'; base-uri 'none'"
    )
    context.add_init_script(
        "window.violations = [];"
        "document.addEventListener('securitypolicyviolation', (e) =>"
        " violations.push(e.violatedDirective + ' ' + e.blockedURI));"
    )
    refused: list[str] = []
    context.on("console", lambda m: refused.append(m.text) if "Content Security" in m.text else 0)
    page = site.open(
        context,
        '<reaction-bar article="csp-1"></reaction-bar>'
        f'<reaction-bar article="csp-2">{bar_html(stack, "csp-2")}</reaction-bar>',
        widget_script(stack),
        headers={"Content-Security-Policy": policy},
    )
    love = button(page, "csp-1", "Love")
    expect(love).to_have_text(re.compile("0$"))
    # Styled by its adopted stylesheet: the pill, its border and its colours.
    look = love.evaluate(
        "b => { const s = getComputedStyle(b); return [s.borderTopLeftRadius, s.display]; }"
    )
    assert look == ["999px", "flex"]  # inline-flex, as an item of the bar's flex row
    love.click()
    expect_state(page, "csp-1", "Love", pressed=True, count="1")
    wait_for_server(stack, page_token(page), "csp-1", "love", 1)
    # The server-rendered bar, its <style> allowed by the hash, taken over and voting too.
    taken_over = button(page, "csp-2", "Love")
    assert taken_over.evaluate("b => getComputedStyle(b).borderTopLeftRadius") == "999px"
    taken_over.click()
    expect_state(page, "csp-2", "Love", pressed=True, count="1")
    assert page.evaluate("violations") == [] and refused == []
    # The policy is enforced: an inline style on this page would be refused.
    page.evaluate(
        "document.head.append(Object.assign(document.createElement('style'), {textContent: 'p{}'}))"
    )
    wait_until(lambda: bool(page.evaluate("violations")), what="the inline style's violation")
