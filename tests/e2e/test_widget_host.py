"""What a site's page can do with the widget, in Chromium against the real stack: hear its
events, show it in the page's language, choose the types a story shows or close it to new
votes, lay it out compactly or right to left, and name its tag. The live region speaks of
the reader's own votes only."""

from __future__ import annotations

import re
from typing import Any, Final

from playwright.sync_api import BrowserContext, ConsoleMessage, Locator, Page, Route, expect

from deploy.local.client import MintedTokens, SyncVoteClient
from deploy.local.redis import RedisServer
from tests.e2e.bars import (
    Stack,
    button,
    expect_state,
    page_token,
    public_tally,
    seed,
    wait_for_server,
    wait_in_page,
    widget_script,
)
from tests.e2e.site import NewsSite
from tests.support import wait_until

# Another library's element that took the widget's tag name first.
OTHER_LIBRARY: Final = (
    "customElements.define('reaction-bar', class OtherBar extends HTMLElement {});"
)
# Every event the page's bars send, as the page's document hears them.
HEAR: Final = """
window.heard = [];
for (const type of ["reaction-vote", "reaction-refused", "reaction-tally"])
  document.addEventListener(type, (e) => heard.push({
    type, detail: e.detail, bubbles: e.bubbles, composed: e.composed, from: e.target.localName,
  }));
"""


def heard(page: Page, kind: str) -> list[dict[str, Any]]:
    """The details of the `reaction-<kind>` events the page has heard, in order."""
    events: list[dict[str, Any]] = page.evaluate("heard")
    assert all(e["bubbles"] and e["composed"] for e in events), events
    return [e["detail"] for e in events if e["type"] == f"reaction-{kind}"]


def bar(page: Page, article: str) -> Locator:
    return page.locator(f'[article="{article}"]')


def status(page: Page, article: str) -> Locator:
    return bar(page, article).get_by_role("status")


def refuse_votes(page: Page, stack: Stack) -> None:
    """Ingest answers every vote of the page with 429, as its rate limit would."""

    def refuse(route: Route) -> None:
        if route.request.method != "POST":
            route.continue_()
            return
        route.fulfill(
            status=429,
            headers={"Access-Control-Allow-Origin": "*", "Retry-After": "1"},
            content_type="application/json",
            body='{"error": {"code": "rate_limited", "message": "slow down"}}',
        )

    page.route(f"{stack.ingest.url}/v1/votes", refuse)


def test_the_page_hears_votes_refusals_and_tallies(
    context: BrowserContext, stack: Stack, site: NewsSite, tokens: MintedTokens
) -> None:
    context.add_init_script(HEAR)
    page = site.open(context, '<reaction-bar article="ev-1"></reaction-bar>', widget_script(stack))
    expect_state(page, "ev-1", "Love", pressed=False, count="0")
    wait_until(lambda: bool(heard(page, "tally")), what="the first tally's event")
    assert heard(page, "tally")[0] == {
        "article": "ev-1",
        "counts": dict.fromkeys(["like", "dislike", "love", "funny", "angry", "sad", "wow"], 0),
        "total": 0,
        "seq": -1,
    }

    button(page, "ev-1", "Love").click()
    wait_until(lambda: len(heard(page, "vote")) == 2, what="the vote and its confirmation")
    assert heard(page, "vote") == [
        {"article": "ev-1", "reaction": "love", "previous": None, "confirmed": False},
        {"article": "ev-1", "reaction": "love", "previous": None, "confirmed": True},
    ]
    wait_for_server(stack, page_token(page), "ev-1", "love", 1)

    with SyncVoteClient(stack.ingest.url, stack.reader.url, tokens=tokens) as votes:
        assert votes.set("ev-1", "a.ev-other", "wow").status_code == 202
    wait_until(
        lambda: any(t["counts"]["wow"] == 1 for t in heard(page, "tally")),
        what="the other reader's vote as a tally event",
    )
    latest = heard(page, "tally")[-1]
    assert (latest["counts"]["love"], latest["counts"]["wow"], latest["total"]) == (1, 1, 2)

    refuse_votes(page, stack)
    button(page, "ev-1", "Sad").click()
    wait_until(lambda: bool(heard(page, "refused")), what="the refusal's event")
    assert heard(page, "refused") == [{"article": "ev-1", "status": 429, "code": "rate_limited"}]
    expect_state(page, "ev-1", "Love", pressed=True, count="1")  # back to the accepted vote


def test_the_live_region_speaks_of_own_votes_only(
    context: BrowserContext, stack: Stack, site: NewsSite, tokens: MintedTokens
) -> None:
    page = site.open(context, '<reaction-bar article="lr-1"></reaction-bar>', widget_script(stack))
    expect_state(page, "lr-1", "Like", pressed=False, count="0")
    # Every change of the live region's text, as a screen reader would be told of it.
    page.evaluate(
        """() => {
        const region = document.querySelector("reaction-bar").shadowRoot.querySelector(".msg");
        window.spoken = [];
        new MutationObserver(() => spoken.push(region.textContent))
          .observe(region, {childList: true, characterData: true, subtree: true});
        }"""
    )
    with SyncVoteClient(stack.ingest.url, stack.reader.url, tokens=tokens) as votes:
        for n, reaction in enumerate(["like", "like", "sad"]):
            assert votes.set("lr-1", f"a.lr-{n}", reaction).status_code == 202
    expect_state(page, "lr-1", "Like", pressed=False, count="2")
    expect_state(page, "lr-1", "Sad", pressed=False, count="1")
    assert page.evaluate("spoken") == []  # other readers' votes change counts, not the region

    button(page, "lr-1", "Like").click()
    expect(status(page, "lr-1")).to_have_text("Your reaction: Like.")
    button(page, "lr-1", "Like").click()
    expect(status(page, "lr-1")).to_have_text("Your reaction was removed.")
    refuse_votes(page, stack)
    button(page, "lr-1", "Wow").click()
    expect(status(page, "lr-1")).to_contain_text("wait a moment")
    assert [t for t in page.evaluate("spoken") if t] == [
        "Your reaction: Like.",
        "Your reaction was removed.",
        "You're reacting very quickly. Please wait a moment and try again.",
    ]


def test_each_bar_starts_once_and_writes_no_attribute_of_its_own(
    context: BrowserContext, stack: Stack, site: NewsSite
) -> None:
    """A bar keeps the language it finds as its own state. Written to the element's `lang`
    (an attribute the bar observes, to follow a page that changes it) it would start the
    bar again, and that start again, until the browser's stack gave out on every bar."""
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    body = "".join(f'<reaction-bar article="once-{i}"></reaction-bar>' for i in range(5))
    body += '<reaction-bar article="once-fr" lang="fr"></reaction-bar>'
    site.open(context, body, widget_script(stack), page=page, lang="de")
    bars = page.locator("reaction-bar")
    for i in range(5):
        expect(bars.nth(i).get_by_role("group", name="Reaktionen")).to_be_visible()
    expect(bars.nth(5).get_by_role("group", name="Réactions")).to_be_visible()
    found = page.evaluate("[...document.querySelectorAll('reaction-bar')].map(b => b.lang)")
    assert found == [""] * 5 + ["fr"]
    assert not errors, errors[:3]


def test_a_german_page_gets_german_labels_texts_and_numbers(
    context: BrowserContext, stack: Stack, site: NewsSite, redis_server: RedisServer
) -> None:
    seed(redis_server.url, "de-1", {"like": 12345, "love": 1_234_567, "sad": 1234})
    configs: list[str] = []
    context.on("request", lambda r: configs.append(r.url) if "/v1/config" in r.url else None)
    body = (
        '<reaction-bar article="de-1"></reaction-bar>'
        '<reaction-bar article="de-1" lang="fr" id="fr"></reaction-bar>'
    )
    page = site.open(context, body, widget_script(stack), lang="de")
    german = page.locator("reaction-bar").first
    expect(german.get_by_role("group", name="Reaktionen")).to_be_visible()
    expect(german.get_by_role("button", name="Gefällt mir 12.345")).to_be_visible()
    expect(german.get_by_role("button", name="Liebe 1,2\u00a0Mio.")).to_be_visible()
    expect(german.get_by_role("button", name="Traurig 1234")).to_be_visible()
    # The bar's own lang attribute wins over the page's.
    french = page.locator("#fr")
    expect(french.get_by_role("button", name="J’aime 12\u00a0k")).to_be_visible()
    assert sorted(u.split("/v1/config")[1] for u in configs) == ["?lang=de", "?lang=fr"]

    german.get_by_role("button", name=re.compile("^Wütend")).click()
    expect(german.get_by_role("status")).to_have_text("Ihre Reaktion: Wütend.")
    refuse_votes(page, stack)
    german.get_by_role("button", name=re.compile("^Wow")).click()
    expect(german.get_by_role("status")).to_have_text(re.compile("^Sie reagieren sehr schnell"))
    expect(german.get_by_role("button", name="Wütend 1")).to_have_attribute("aria-pressed", "true")


def test_a_story_shows_some_types_or_is_closed_to_votes(
    context: BrowserContext, stack: Stack, site: NewsSite, tokens: MintedTokens
) -> None:
    body = (
        '<reaction-bar article="ty-1" types="sad, angry,like"></reaction-bar>'
        '<reaction-bar article="ro-1" readonly></reaction-bar>'
    )
    votes_sent: list[str] = []
    context.on("request", lambda r: votes_sent.append(r.url) if "/v1/votes" in r.url else None)
    page = site.open(context, body, widget_script(stack))
    subset = bar(page, "ty-1").get_by_role("button")
    expect(subset).to_have_count(3)
    assert subset.evaluate_all("bs => bs.map(b => b.dataset.reaction)") == ["like", "angry", "sad"]

    closed = bar(page, "ro-1")
    expect(closed.get_by_role("status")).to_have_text("Reactions are closed for this story.")
    buttons = closed.get_by_role("button")
    expect(buttons).to_have_count(7)
    assert set(buttons.evaluate_all("bs => bs.map(b => b.ariaDisabled)")) == {"true"}
    like = closed.get_by_role("button", name=re.compile("^Like"))
    like.click(force=True)  # Playwright would wait for an enabled button
    like.focus()
    page.keyboard.press("Enter")
    expect(like).to_have_attribute("aria-pressed", "false")
    # Still live: an outside vote shows.
    with SyncVoteClient(stack.ingest.url, stack.reader.url, tokens=tokens) as votes:
        assert votes.set("ro-1", "a.ro-other", "like").status_code == 202
    expect_state(page, "ro-1", "Like", pressed=False, count="1")
    wait_until(lambda: public_tally(stack, "ro-1")["total"] == 1, what="the outside vote")
    assert votes_sent == []  # the reader's clicks sent nothing


def test_compact_and_right_to_left_layouts(
    context: BrowserContext, stack: Stack, site: NewsSite
) -> None:
    body = (
        '<reaction-bar article="lay-1"></reaction-bar>'
        '<reaction-bar article="lay-1" dir="rtl" lang="ar" id="rtl"></reaction-bar>'
        '<reaction-bar article="lay-1" compact id="compact"></reaction-bar>'
    )
    page = site.open(context, body, widget_script(stack))
    ltr, rtl, compact = page.locator("reaction-bar").all()
    expect(rtl.get_by_role("button", name=re.compile("^أعجبني"))).to_be_visible()
    expect(compact.get_by_role("button")).to_have_count(7)

    def edges(bar: Locator) -> list[tuple[float, float, float]]:
        """Top, left and right of each button."""
        boxes: list[tuple[float, float, float]] = bar.get_by_role("button").evaluate_all(
            "bs => bs.map(b => b.getBoundingClientRect()).map(r => [r.top, r.left, r.right])"
        )
        return boxes

    def row(bar: Locator) -> list[tuple[float, float, float]]:
        """The buttons of the bar's first row (a narrow bar wraps)."""
        boxes = edges(bar)
        return [b for b in boxes if b[0] == boxes[0][0]]

    # Left to right: the first button at the left edge, each next one to its right. Right to
    # left, mirrored: the first at the right edge, each next one to its left.
    assert len(row(ltr)) > 2 and len(row(rtl)) > 2
    assert [left for _, left, _ in row(ltr)] == sorted(left for _, left, _ in row(ltr))
    assert [r for _, _, r in row(rtl)] == sorted((r for _, _, r in row(rtl)), reverse=True)
    assert abs(row(ltr)[0][1] - ltr.evaluate("b => b.getBoundingClientRect().left")) < 1
    assert abs(row(rtl)[0][2] - rtl.evaluate("b => b.getBoundingClientRect().right")) < 1

    # Compact: emoji and count, the label kept for screen readers only; narrower.
    expect(compact.get_by_role("button", name="Like 0", exact=True)).to_be_visible()
    label = compact.locator(".l").first.evaluate("l => l.getBoundingClientRect().width")
    assert label <= 1
    width = ltr.get_by_role("button").first.evaluate("b => b.offsetWidth")
    assert compact.get_by_role("button").first.evaluate("b => b.offsetWidth") < width


def test_the_tag_name_is_the_sites_choice_and_a_clash_is_reported(
    context: BrowserContext, stack: Stack, site: NewsSite
) -> None:
    warnings: list[str] = []

    def warned(message: ConsoleMessage) -> None:
        if message.type == "warning" and message.text.startswith("Reactions:"):
            warnings.append(message.text)

    context.on("console", warned)
    # Another library took <reaction-bar> first: the widget says so and leaves it alone.
    other = (
        f'<script src="{site.put("/other.js", OTHER_LIBRARY, kind="text/javascript")}"></script>'
    )
    page = site.open(
        context,
        '<reaction-bar article="tag-1"></reaction-bar><news-reactions article="tag-1">'
        "</news-reactions>",
        other + widget_script(stack, attrs=' data-element="news-reactions"'),
    )
    mine = page.locator("news-reactions")
    expect(mine.get_by_role("button")).to_have_count(7)  # the widget under the site's name
    assert page.evaluate("customElements.get('reaction-bar').name") == "OtherBar"

    page = site.open(context, '<reaction-bar article="tag-1"></reaction-bar>', other)
    page.add_script_tag(url=f"{stack.reader.url}/widget.js")
    wait_in_page(page, lambda: bool(warnings), what="the clash's warning")
    assert "<reaction-bar> is already defined by another script" in warnings[0]
    assert 'data-element="' in warnings[0] and "define(" in warnings[0]


def test_a_bar_without_a_valid_article_id_says_why_in_the_console(
    context: BrowserContext, stack: Stack, site: NewsSite
) -> None:
    """It shows nothing; the site's developers are told why."""
    warnings: list[str] = []
    context.on(
        "console",
        lambda m: warnings.append(m.text) if m.type == "warning" and "Reactions:" in m.text else 0,
    )
    page = site.open(
        context,
        '<reaction-bar article="bad id"></reaction-bar><reaction-bar></reaction-bar>'
        '<reaction-bar article="good-1"></reaction-bar>',
        widget_script(stack),
    )
    expect(page.locator('reaction-bar[article="good-1"]').get_by_role("button")).to_have_count(7)
    wait_in_page(page, lambda: bool(warnings), what="the bad id's warning")
    # One: a bar with no id yet is left quiet (a framework may set it after inserting it).
    assert len(warnings) == 1 and 'article="bad id" is not an article id' in warnings[0]
    bad = page.locator('reaction-bar[article="bad id"]')
    assert bad.evaluate("b => b.shadowRoot.innerHTML") == ""
