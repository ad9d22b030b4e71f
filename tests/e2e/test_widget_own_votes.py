"""The reader's own vote in Chromium against the real stack, wherever a page learns it: a
story shown twice on a page, the site's other tabs, answers that come back out of order, and
a page loaded while the own-votes read fails or does not include the vote yet. The vote is
pressed where the reader looks and counted once."""

from __future__ import annotations

import re
from functools import partial
from typing import Any

import orjson
from playwright.sync_api import BrowserContext, Locator, Page, Route, expect

from tests.e2e.bars import (
    Stack,
    button,
    expect_state,
    own_vote,
    page_token,
    stored_token,
    wait_for_server,
    wait_in_page,
    widget_script,
)
from tests.e2e.site import NewsSite

UNAVAILABLE: dict[str, Any] = {
    "status": 503,
    "headers": {"Access-Control-Allow-Origin": "*", "Retry-After": "1"},
    "content_type": "application/json",
    "body": '{"error": {"code": "redis_unavailable", "message": "retry"}}',
}


def story_page(context: BrowserContext, site: NewsSite, stack: Stack, body: str) -> Page:
    """A site's page with `body` (its bars), the widget from the reader."""
    return site.open(context, body, widget_script(stack))


def twice(article: str) -> str:
    """A story shown twice: in the top stories and in its section."""
    return (
        f'<reaction-bar article="{article}" id="top"></reaction-bar><p>…</p>'
        f'<reaction-bar article="{article}" id="section"></reaction-bar>'
    )


def pick(bar: Locator, label: str) -> Locator:
    """The button of `label` in `bar`."""
    return bar.get_by_role("button", name=re.compile(f"^{label} "))


def shows(bars: tuple[Locator, ...], label: str, *, pressed: bool, count: str) -> None:
    """Each bar shows `label` with `count`, pressed or not."""
    for bar in bars:
        expect(pick(bar, label)).to_have_attribute("aria-pressed", "true" if pressed else "false")
        expect(pick(bar, label).locator(".n")).to_have_text(count)


def announce(page: Page, message: dict[str, Any]) -> None:
    """What a tab of the site says when ingest accepted one of the reader's votes."""
    page.evaluate("m => new BroadcastChannel('reactions-votes').postMessage(m)", message)


class HeldAnswer:
    """The page's next vote reaches ingest now; its answer is held until `release`."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.held: list[tuple[Route, Any]] = []
        page.route("**/v1/votes", self._hold)

    def _hold(self, route: Route) -> None:
        if route.request.method == "POST" and not self.held:
            self.held.append((route, route.fetch()))  # the vote reaches ingest
        else:
            route.continue_()

    def wait(self) -> None:
        """Until the held vote has reached ingest (the page's routes run meanwhile)."""
        wait_in_page(self.page, lambda: bool(self.held), what="the held vote")

    def release(self) -> None:
        """Give the page the held vote's answer."""
        route, response = self.held[0]
        route.fulfill(response=response)


def overtake(page: Page, stack: Stack, article: str, first: str, held: str, newer: str) -> None:
    """The story twice: the top bar votes `first` and, once it is in, `held`, whose answer is
    held back while the section's bar votes `newer`; then the held answer comes."""
    top, section = page.locator("#top"), page.locator("#section")
    pick(top, first).click()
    wait_for_server(stack, page_token(page), article, first.lower(), 1)
    answer = HeldAnswer(page)
    pick(top, held).click()
    answer.wait()
    pick(section, newer).click()
    shows((section,), newer, pressed=True, count="1")
    answer.release()


def lose_answers(page: Page, *, only_first: bool) -> list[bool]:
    """The page's votes reach ingest but their answers are lost (the connection reset):
    the first vote's only, or every one's. The list holds one entry per answer lost."""
    lost: list[bool] = []

    def lose(route: Route) -> None:
        if route.request.method == "POST" and not (only_first and lost):
            route.fetch()  # ingest takes it
            lost.append(True)
            route.abort("connectionreset")
        else:
            route.continue_()

    page.route("**/v1/votes", lose)
    return lost


def test_a_story_shown_twice_on_a_page_shows_the_reader_s_vote_once_in_both_bars(
    context: BrowserContext, stack: Stack, site: NewsSite
) -> None:
    page = story_page(context, site, stack, twice("w-twice"))
    bars = top, section = page.locator("#top"), page.locator("#section")
    pick(top, "Like").click()
    shows(bars, "Like", pressed=True, count="1")
    token = page_token(page)
    wait_for_server(stack, token, "w-twice", "like", 1)
    shows(bars, "Like", pressed=True, count="1")
    # The other bar knows the vote: a click there takes it back, not adds a second.
    pick(section, "Like").click()
    shows(bars, "Like", pressed=False, count="0")
    wait_for_server(stack, token, "w-twice", None, 0)
    pick(section, "Love").click()
    shows(bars, "Love", pressed=True, count="1")
    shows(bars, "Like", pressed=False, count="0")
    wait_for_server(stack, token, "w-twice", "love", 1)
    shows(bars, "Love", pressed=True, count="1")


def test_a_vote_in_one_tab_shows_in_the_site_s_other_tabs(
    context: BrowserContext, stack: Stack, site: NewsSite
) -> None:
    """The front page in one tab, the story in another: the reader's vote in the story's
    tab is theirs in the front page's too, so a click there takes it back."""
    bar = '<reaction-bar article="w-tabs"></reaction-bar>'
    front, story = story_page(context, site, stack, bar), story_page(context, site, stack, bar)
    button(story, "w-tabs", "Like").click()
    expect_state(story, "w-tabs", "Like", pressed=True, count="1")
    expect_state(front, "w-tabs", "Like", pressed=True, count="1")
    token = page_token(story)
    wait_for_server(stack, token, "w-tabs", "like", 1)
    button(front, "w-tabs", "Like").click()
    for tab in (front, story):
        expect_state(tab, "w-tabs", "Like", pressed=False, count="0")
    wait_for_server(stack, token, "w-tabs", None, 0)
    button(front, "w-tabs", "Wow").click()
    for tab in (front, story):
        expect_state(tab, "w-tabs", "Wow", pressed=True, count="1")
    wait_for_server(stack, token, "w-tabs", "wow", 1)


def test_an_older_vote_announced_late_by_another_tab_changes_nothing(
    context: BrowserContext, stack: Stack, site: NewsSite
) -> None:
    story = story_page(context, site, stack, '<reaction-bar article="w-late"></reaction-bar>')
    button(story, "w-late", "Funny").click()
    expect_state(story, "w-late", "Funny", pressed=True, count="1")
    wait_for_server(stack, page_token(story), "w-late", "funny", 1)
    seq = own_vote(stack, page_token(story), "w-late")["seq"]
    held = stored_token(story)
    assert held is not None
    other = site.open(context, "<p>another tab</p>")
    about = {"ingest": stack.ingest.url, "article": "w-late", "reader": held["reader_id"]}
    # A vote accepted before this one, announced only now; then a newer one, which is
    # taken, so the older one was delivered first and left alone.
    announce(other, {**about, "seq": seq - 1, "reaction": "sad"})
    announce(other, {**about, "seq": seq + 1, "reaction": "wow"})
    expect_state(story, "w-late", "Wow", pressed=True, count="1")
    expect_state(story, "w-late", "Sad", pressed=False, count="0")
    expect_state(story, "w-late", "Funny", pressed=False, count="0")


def test_a_newer_vote_answered_first_wins_over_an_older_one_answered_late(
    context: BrowserContext, stack: Stack, site: NewsSite
) -> None:
    """Two bars of one story on a slow network: the first bar's vote reaches ingest first
    but its answer comes back after the second bar's. The second vote is the reader's."""
    page = story_page(context, site, stack, twice("w-order"))
    bars = page.locator("#top"), page.locator("#section")
    overtake(page, stack, "w-order", "Like", "Love", "Angry")
    shows(bars, "Angry", pressed=True, count="1")
    wait_for_server(stack, page_token(page), "w-order", "angry", 1)
    shows(bars, "Angry", pressed=True, count="1")
    shows(bars, "Love", pressed=False, count="0")
    shows(bars, "Like", pressed=False, count="0")


def test_own_votes_that_could_not_be_read_are_read_again(
    context: BrowserContext, stack: Stack, site: NewsSite
) -> None:
    """A returning reader's page loaded while the own-votes read fails (the reader or
    Redis down, the counts from the edge's cache) presses the vote once it can be read."""
    page = story_page(context, site, stack, '<reaction-bar article="w-unread"></reaction-bar>')
    button(page, "w-unread", "Sad").click()
    wait_for_server(stack, page_token(page), "w-unread", "sad", 1)
    page.route("**/v1/me/reactions*", lambda route: route.fulfill(**UNAVAILABLE))
    page.reload()
    expect_state(page, "w-unread", "Sad", pressed=False, count="1")
    page.unroute("**/v1/me/reactions*")
    expect_state(page, "w-unread", "Sad", pressed=True, count="1")


def test_a_vote_not_applied_yet_is_the_reader_s_after_a_reload(
    context: BrowserContext, stack: Stack, site: NewsSite
) -> None:
    """The aggregator behind or down: the reloaded page's reads do not include the vote
    ingest accepted. It is pressed and counted once all the same, from what the widget kept
    of the reader's recent votes."""
    page = story_page(context, site, stack, '<reaction-bar article="w-pending"></reaction-bar>')
    button(page, "w-pending", "Wow").click()
    wait_for_server(stack, page_token(page), "w-pending", "wow", 1)

    def before_the_vote(route: Route) -> None:
        # Every read as it was before the vote was applied: no count, nothing of the
        # reader's, nothing applied.
        body = orjson.loads(route.fetch().body())
        for entry in body["articles"].values():
            entry.update(counts=dict.fromkeys(entry["counts"], 0), total=0, seq=-1)
            if "mine" in entry:
                entry["mine"] = None
        route.fulfill(
            status=200,
            headers={"Access-Control-Allow-Origin": "*", "Cache-Control": "no-store"},
            content_type="application/json",
            body=orjson.dumps(body),
        )

    page.route(re.compile(r".*/v1/(me/)?reactions\?.*"), before_the_vote)
    page.route(re.compile(r".*/v1/stream\?.*"), lambda route: route.fulfill(**UNAVAILABLE))
    page.reload()
    expect_state(page, "w-pending", "Wow", pressed=True, count="1")


def test_a_vote_whose_answer_is_lost_is_sent_again_and_shown_once(
    context: BrowserContext, stack: Stack, site: NewsSite
) -> None:
    """Ingest takes the vote but the connection drops before its answer: the widget cannot
    know, so it sends the same vote again (counted once) and shows where it stands."""
    page = story_page(context, site, stack, twice("w-lost"))
    bars = top, _ = page.locator("#top"), page.locator("#section")
    pick(top, "Like").click()
    wait_for_server(stack, page_token(page), "w-lost", "like", 1)
    lost = lose_answers(page, only_first=True)
    pick(top, "Love").click()
    shows(bars, "Love", pressed=True, count="1")
    shows(bars, "Like", pressed=False, count="0")
    wait_for_server(stack, page_token(page), "w-lost", "love", 1)
    shows(bars, "Love", pressed=True, count="1")
    assert lost


def test_a_bar_started_anew_during_a_vote_keeps_the_vote(
    context: BrowserContext, stack: Stack, site: NewsSite
) -> None:
    """The site changes a bar's `types` while its vote is out: the vote, accepted, is the
    reader's in that bar and in the story's other bar."""
    page = story_page(context, site, stack, twice("w-anew"))
    bars = top, _ = page.locator("#top"), page.locator("#section")
    pick(top, "Like").click()
    wait_for_server(stack, page_token(page), "w-anew", "like", 1)
    answer = HeldAnswer(page)
    pick(top, "Wow").click()
    answer.wait()
    top.evaluate("bar => bar.setAttribute('types', 'like,wow,sad')")
    answer.release()
    shows(bars, "Wow", pressed=True, count="1")
    shows(bars, "Like", pressed=False, count="0")
    wait_for_server(stack, page_token(page), "w-anew", "wow", 1)
    shows(bars, "Wow", pressed=True, count="1")


def test_a_new_reader_after_a_refused_token_does_not_inherit_the_old_reader_s_votes(
    context: BrowserContext, stack: Stack, site: NewsSite
) -> None:
    """A vote answered 401 (the token expired or its key was rotated out) is sent again as
    a new reader; the page's other bars then show the new reader's votes (none)."""
    body = '<reaction-bar article="w-who-1"></reaction-bar><reaction-bar article="w-who-2">'
    page = story_page(context, site, stack, body + "</reaction-bar>")
    button(page, "w-who-2", "Like").click()
    wait_for_server(stack, page_token(page), "w-who-2", "like", 1)
    held = stored_token(page)
    assert held is not None
    # The kept token stops verifying (its signature altered), as after a key rotation.
    tampered = {
        **held,
        "token": held["token"][:-4] + ("AAAA" if held["token"][-4:] != "AAAA" else "BBBB"),
    }
    page.evaluate(
        "t => localStorage.setItem('reactions.reader-token', JSON.stringify(t))", tampered
    )
    button(page, "w-who-1", "Sad").click()
    expect_state(page, "w-who-1", "Sad", pressed=True, count="1")
    # w-who-2 still counts the old reader's like, which is no longer this reader's.
    expect_state(page, "w-who-2", "Like", pressed=False, count="1")
    renewed = stored_token(page)
    assert renewed is not None and renewed["reader_id"] != held["reader_id"]
    wait_for_server(stack, renewed["token"], "w-who-1", "sad", 1)


def test_own_votes_read_again_back_off_and_recover_from_a_failed_retry(
    context: BrowserContext, stack: Stack, site: NewsSite
) -> None:
    """While the own-votes read fails, it is tried again 2 s later and then doubling (not
    every 2 s); a retry that finds the public read failing too is tried again as well."""
    page = story_page(context, site, stack, '<reaction-bar article="w-backoff"></reaction-bar>')
    button(page, "w-backoff", "Funny").click()
    wait_for_server(stack, page_token(page), "w-backoff", "funny", 1)
    own_reads: list[float] = []
    page.on("request", lambda r: own_reads.append(1) if "/v1/me/reactions" in r.url else None)
    page.route("**/v1/me/reactions*", lambda route: route.fulfill(**UNAVAILABLE))
    page.reload()
    expect_state(page, "w-backoff", "Funny", pressed=False, count="1")
    # Reads at about 0, 2, 6, 14 s: fewer than 6 in 16 s, where every 2 s would make 9.
    page.wait_for_timeout(16_000)
    assert 2 <= len(own_reads) < 6, own_reads
    # The next retry finds the public read failing too: it is tried again all the same.
    page.route(re.compile(r".*/v1/reactions\?.*"), lambda route: route.fulfill(**UNAVAILABLE))
    before = len(own_reads)
    wait_in_page(page, lambda: len(own_reads) > before, timeout=60)
    page.unroute(re.compile(r".*/v1/reactions\?.*"))
    page.unroute("**/v1/me/reactions*")
    expect(button(page, "w-backoff", "Funny")).to_have_attribute(
        "aria-pressed", "true", timeout=90_000
    )


def test_a_vote_whose_answers_are_all_lost_is_read_back_from_the_reader(
    context: BrowserContext, stack: Stack, site: NewsSite
) -> None:
    """Ingest takes the vote and its second sending, and both answers are lost: the bars
    cannot learn the vote from ingest, so they read the reader's votes again."""
    page = story_page(context, site, stack, twice("w-unknown"))
    bars = top, _ = page.locator("#top"), page.locator("#section")
    pick(top, "Like").click()
    wait_for_server(stack, page_token(page), "w-unknown", "like", 1)
    lose_answers(page, only_first=False)
    pick(top, "Love").click()
    expect(top.get_by_role("status")).to_contain_text("couldn't be saved")
    wait_for_server(stack, page_token(page), "w-unknown", "love", 1)
    shows(bars, "Love", pressed=True, count="1")
    shows(bars, "Like", pressed=False, count="0")


def test_a_newer_vote_of_a_reaction_a_bar_does_not_show_is_taken_quietly(
    context: BrowserContext, stack: Stack, site: NewsSite
) -> None:
    """The story twice, the top bar showing two types only: a newer vote of another type,
    from the section's bar, reaches the top bar while its own vote is out."""
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    body = twice("w-types").replace('id="top"', 'id="top" types="like,love"', 1)
    site.open(context, body, widget_script(stack), page=page)
    top, section = page.locator("#top"), page.locator("#section")
    overtake(page, stack, "w-types", "Like", "Love", "Wow")
    wait_for_server(stack, page_token(page), "w-types", "wow", 1)
    shows((top,), "Love", pressed=False, count="0")
    shows((top,), "Like", pressed=False, count="0")
    shows((section,), "Wow", pressed=True, count="1")
    assert not errors, errors


def test_a_vote_that_never_answers_is_given_up_and_the_page_votes_on(
    context: BrowserContext, stack: Stack, site: NewsSite
) -> None:
    """The page's first vote reaches no answer (a hung connection): after 10 s the bar gives
    it up and sends it once more, and the vote another bar cast meanwhile, which waited for
    that first answer, goes out too."""
    body = '<reaction-bar article="w-hung-1"></reaction-bar><reaction-bar article="w-hung-2">'
    page = story_page(context, site, stack, body + "</reaction-bar>")
    hung: list[Route] = []

    def hang_first(route: Route) -> None:
        if route.request.method == "POST" and not hung:
            hung.append(route)  # never answered
        else:
            route.continue_()

    page.route("**/v1/votes", hang_first)
    expect_state(page, "w-hung-2", "Love", pressed=False, count="0")
    button(page, "w-hung-1", "Like").click()
    wait_in_page(page, lambda: bool(hung), what="the hung vote")
    button(page, "w-hung-2", "Love").click()
    token = page_token(page)

    def applied(article: str, mine: str) -> bool:
        vote = own_vote(stack, token, article)
        return bool(vote["mine"] == mine and vote["total"] == 1)

    # Polled through the page: its routes answer the votes after the hung one meanwhile.
    for article, mine in (("w-hung-1", "like"), ("w-hung-2", "love")):
        wait_in_page(page, partial(applied, article, mine), timeout=60, what=f"{article} {mine}")
    expect_state(page, "w-hung-1", "Like", pressed=True, count="1")
    expect_state(page, "w-hung-2", "Love", pressed=True, count="1")
