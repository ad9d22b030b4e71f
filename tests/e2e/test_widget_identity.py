"""The widget's reader identity in Chromium against the real stack: nothing stored and no
token asked for on a page view; a token at the first click, kept, renewed, replaced when
ingest refuses it; a site's own token through the hook; and the own-vote rule, under which
a stale cached tally never shows the reader's vote twice or not at all."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import jwt
from playwright.sync_api import BrowserContext, Page, Request, Route, expect

from deploy.local.client import MintedTokens, SyncVoteClient
from tests.e2e.bars import (
    TOKEN_KEY,
    Stack,
    bar_page,
    button,
    expect_state,
    own_vote,
    page_token,
    public_tally,
    stored_token,
    wait_for_server,
    wait_in_page,
)
from tests.support import wait_until

DAY_MS = 86_400_000
PROVIDER_SCRIPT = """
customElements.whenDefined("reaction-bar").then(() =>
  customElements.get("reaction-bar").setTokenProvider(async () => %s));
"""


def record(context: BrowserContext) -> list[Request]:
    """Every request the context's pages make from now on."""
    requests: list[Request] = []
    context.on("request", lambda request: requests.append(request))
    return requests


def calls(requests: list[Request], method: str, path: str) -> list[Request]:
    """The requests of `method` to a URL containing `path`."""
    return [r for r in requests if r.method == method and path in r.url]


def store_token(page: Page, held: dict[str, Any]) -> None:
    """Put a token where the widget keeps it, as an earlier visit would have."""
    page.evaluate("([k, v]) => localStorage.setItem(k, v)", [TOKEN_KEY, json.dumps(held)])


def test_a_page_view_stores_nothing_and_asks_for_no_token(
    context: BrowserContext, stack: Stack
) -> None:
    page = bar_page(context, stack, "w-consent")
    expect_state(page, "w-consent", "Like", pressed=False, count="0")
    # A reader of the widget before tokens kept a bare id; it names nobody now.
    page.evaluate("localStorage.setItem('reactions.reader-id', 'old-uuid')")
    requests = record(context)
    page.reload()
    expect_state(page, "w-consent", "Like", pressed=False, count="0")
    expect(button(page, "demo-bus-fares", "Like")).to_have_attribute("aria-pressed", "false")
    assert page.evaluate("localStorage.length") == 0
    assert page.evaluate("document.cookie") == ""
    assert not calls(requests, "POST", "/v1/readers")
    assert not calls(requests, "GET", "/v1/me/")
    bulk = calls(requests, "GET", "/v1/reactions?")
    # The widget's one read; the browser may add a background revalidation of its cached
    # body (stale-while-revalidate), which Playwright reports as another type.
    widget_reads = [r for r in bulk if r.resource_type == "fetch"]
    assert len(widget_reads) == 1 and "authorization" not in widget_reads[0].headers


def test_the_token_comes_at_the_first_click_and_is_kept_across_reloads(
    context: BrowserContext, stack: Stack
) -> None:
    requests = record(context)
    page = bar_page(context, stack, "w-first")
    expect_state(page, "w-first", "Funny", pressed=False, count="0")
    assert stored_token(page) is None
    button(page, "w-first", "Funny").click()
    expect_state(page, "w-first", "Funny", pressed=True, count="1")
    token = page_token(page)
    held = stored_token(page)
    assert held is not None and held["expires"] > time.time() * 1000 + 300 * DAY_MS
    wait_for_server(stack, token, "w-first", "funny", 1)
    assert len(calls(requests, "POST", "/v1/readers")) == 1

    page.reload()  # the reader's vote comes back from the own-votes read, with the token
    expect_state(page, "w-first", "Funny", pressed=True, count="1")
    me = calls(requests, "GET", "/v1/me/reactions?")
    assert len(me) == 1 and me[0].headers["authorization"] == f"Bearer {token}"
    button(page, "w-first", "Angry").click()
    expect_state(page, "w-first", "Angry", pressed=True, count="1")
    expect_state(page, "w-first", "Funny", pressed=False, count="0")
    wait_for_server(stack, token, "w-first", "angry", 1)
    assert len(calls(requests, "POST", "/v1/readers")) == 1  # one reader, one token
    assert page_token(page) == token


def test_a_token_near_its_expiry_is_renewed_on_a_page_view_for_the_same_reader(
    context: BrowserContext, stack: Stack
) -> None:
    with SyncVoteClient(stack.ingest.url, stack.reader.url) as votes:
        issued = votes.new_reader().json()
        assert votes.send(votes.api.vote(issued["token"], "w-renew", "wow")).status_code == 202
    wait_for_server(stack, issued["token"], "w-renew", "wow", 1)
    page = bar_page(context, stack, "w-renew")
    expect_state(page, "w-renew", "Wow", pressed=False, count="1")  # no token: not the reader's
    now = int(page.evaluate("Date.now()"))
    # Issued 364 days ago, a day left: under a tenth of its lifetime.
    old = {**issued, "issued": now - 364 * DAY_MS, "expires": now + DAY_MS}
    store_token(page, old)
    requests = record(context)
    page.reload()
    expect_state(page, "w-renew", "Wow", pressed=True, count="1")
    # Renewed: a full lifetime again (the token itself may be the same string when it is
    # renewed within the second it was issued).
    wait_until(
        lambda: (stored_token(page) or {}).get("expires", 0) > now + 300 * DAY_MS,
        what="the renewed token",
    )
    renewal = calls(requests, "POST", "/v1/readers")
    assert len(renewal) == 1 and renewal[0].headers["authorization"] == f"Bearer {issued['token']}"
    renewed = stored_token(page)
    assert renewed is not None and renewed["reader_id"] == issued["reader_id"]
    assert own_vote(stack, renewed["token"], "w-renew")["mine"] == "wow"


def test_with_storage_blocked_the_token_lives_in_memory_for_the_page(
    context: BrowserContext, stack: Stack
) -> None:
    context.add_init_script(
        'Object.defineProperty(window, "localStorage", {get() {'
        ' throw new DOMException("The operation is insecure.", "SecurityError"); }});'
    )
    requests = record(context)
    page = bar_page(context, stack, "w-blocked")
    expect_state(page, "w-blocked", "Love", pressed=False, count="0")
    button(page, "w-blocked", "Love").click()
    expect_state(page, "w-blocked", "Love", pressed=True, count="1")
    with page.expect_response(lambda r: r.url.endswith("/v1/votes") and r.status == 202):
        button(page, "w-blocked", "Angry").click()
    expect_state(page, "w-blocked", "Angry", pressed=True, count="1")
    votes = calls(requests, "POST", "/v1/votes")
    token = votes[-1].headers["authorization"].removeprefix("Bearer ")
    assert {v.headers["authorization"] for v in votes} == {f"Bearer {token}"}
    assert len(calls(requests, "POST", "/v1/readers")) == 1
    wait_for_server(stack, token, "w-blocked", "angry", 1)

    page.reload()  # nothing was kept: a new page view is a reader without a token
    expect_state(page, "w-blocked", "Angry", pressed=False, count="1")
    assert len(calls(requests, "POST", "/v1/readers")) == 1


def refuse_first(page: Page, url: str) -> list[Route]:
    """Answer the first POST to `url` with ingest's 401 (a token it no longer takes)."""
    refused: list[Route] = []

    def handle(route: Route) -> None:
        if route.request.method != "POST" or refused:
            route.continue_()
            return
        refused.append(route)
        route.fulfill(
            status=401,
            headers={
                "Access-Control-Allow-Origin": "*",
                "WWW-Authenticate": 'Bearer realm="reactions", error="invalid_token"',
            },
            content_type="application/json",
            body='{"error": {"code": "expired_token", "message": "The token has expired."}}',
        )

    page.route(url, handle)
    return refused


def test_a_refused_token_is_dropped_and_the_click_retried_once_with_a_new_one(
    context: BrowserContext, stack: Stack
) -> None:
    page = bar_page(context, stack, "w-refused")
    expect_state(page, "w-refused", "Like", pressed=False, count="0")
    now = int(page.evaluate("Date.now()"))
    claims = {"iss": "reactions", "aud": "reactions", "sub": "a.forged", "exp": now // 1000 + 3600}
    forged = {
        "token": jwt.encode(claims, b"k" * 32, algorithm="HS256"),
        "reader_id": "a.forged",
        "issued": now,
        "expires": now + 365 * DAY_MS,
    }
    store_token(page, forged)
    requests = record(context)
    page.reload()  # the own-votes read answers 401: the token is dropped, none is minted
    expect_state(page, "w-refused", "Like", pressed=False, count="0")
    wait_until(lambda: stored_token(page) is None, what="the refused token to be dropped")
    assert not calls(requests, "POST", "/v1/readers")

    refused = refuse_first(page, f"{stack.ingest.url}/v1/votes")
    with page.expect_response(lambda r: r.url.endswith("/v1/votes") and r.status == 202):
        button(page, "w-refused", "Like").click()
    expect_state(page, "w-refused", "Like", pressed=True, count="1")
    token = page_token(page)
    wait_for_server(stack, token, "w-refused", "like", 1)
    assert len(refused) == 1
    # The refused vote's token was dropped and a second reader asked for.
    assert len(calls(requests, "POST", "/v1/readers")) == 2
    assert refused[0].request.headers["authorization"] != f"Bearer {token}"
    assert len(calls(requests, "POST", "/v1/votes")) == 2


def test_a_site_token_from_the_hook_votes_as_the_sites_reader(
    context: BrowserContext, stack: Stack
) -> None:
    site_token = stack.site_token("reader-42")
    context.add_init_script(PROVIDER_SCRIPT % json.dumps(site_token))
    requests = record(context)
    page = bar_page(context, stack, "w-site")
    expect_state(page, "w-site", "Love", pressed=False, count="0")
    button(page, "w-site", "Love").click()
    expect_state(page, "w-site", "Love", pressed=True, count="1")
    wait_for_server(stack, site_token, "w-site", "love", 1)
    assert own_vote(stack, site_token, "w-site")["reader_id"] == "s.reader-42"
    vote = calls(requests, "POST", "/v1/votes")
    assert len(vote) == 1 and vote[0].headers["authorization"] == f"Bearer {site_token}"
    # The site's token is the site's: never stored, and no anonymous reader is made.
    assert stored_token(page) is None
    assert not calls(requests, "POST", "/v1/readers")

    page.reload()
    expect_state(page, "w-site", "Love", pressed=True, count="1")


def test_a_refused_site_token_is_reported_and_not_retried(
    context: BrowserContext, stack: Stack
) -> None:
    expired = stack.site_token("reader-43", ttl_s=-120)
    context.add_init_script(PROVIDER_SCRIPT % json.dumps(expired))
    requests = record(context)
    page = bar_page(context, stack, "w-site-expired")
    expect_state(page, "w-site-expired", "Wow", pressed=False, count="0")
    button(page, "w-site-expired", "Wow").click()
    message = page.locator('reaction-bar[article="w-site-expired"]').get_by_role("status")
    expect(message).to_contain_text("sign in again")
    expect_state(page, "w-site-expired", "Wow", pressed=False, count="0")
    assert len(calls(requests, "POST", "/v1/votes")) == 1
    assert not calls(requests, "POST", "/v1/readers")
    assert stored_token(page) is None


class StaleEdge:
    """What a lagging cache or reader instance would serve one article's bars: the public
    bulk read and the live stream both answer the tally set here."""

    def __init__(self, page: Page, article: str, tally: dict[str, Any]) -> None:
        self.article = article
        self.tally = tally
        self.streamed: list[int] = []  # the seq of each stream answer, in order
        page.route(re.compile(r"/v1/reactions\?ids="), self._bulk)
        page.route(re.compile(r"/v1/stream\?ids="), self._stream)

    def _bulk(self, route: Route) -> None:
        response = route.fetch()
        body = response.json()
        body["articles"][self.article] = {k: self.tally[k] for k in ("counts", "total", "seq")}
        # The body is rewritten: its length and encoding are no longer the original's.
        headers = {
            k: v
            for k, v in response.headers.items()
            if k.lower() not in ("content-length", "content-encoding", "etag")
        }
        route.fulfill(status=response.status, headers=headers, body=json.dumps(body))

    def _stream(self, route: Route) -> None:
        self.streamed.append(self.tally["seq"])
        # The body ends and the EventSource reconnects 200 ms later: one tally per answer.
        body = f"retry: 200\nevent: tally\ndata: {json.dumps(self.tally)}\n\n"
        route.fulfill(status=200, content_type="text/event-stream", body=body)

    def serve(self, page: Page, tally: dict[str, Any]) -> None:
        """Answer `tally` from now on; return once the bar has had it from the stream twice
        (the second connection follows the first answer's event)."""
        self.tally = tally
        start = len(self.streamed)
        wait_in_page(
            page,
            lambda: self.streamed[start:].count(tally["seq"]) >= 2,
            what=f"the stream to serve seq {tally['seq']}",
        )


def shown(page: Page, article: str, label: str) -> tuple[str | None, str | None]:
    """Pressed state and count of a button, as shown right now (no waiting)."""
    target = button(page, article, label)
    return target.get_attribute("aria-pressed"), target.locator(".n").text_content()


def test_a_stale_cached_tally_never_shows_the_vote_twice_or_loses_it(
    context: BrowserContext, stack: Stack, tokens: MintedTokens
) -> None:
    article = "w-stale"
    with SyncVoteClient(stack.ingest.url, stack.reader.url, tokens=tokens) as votes:
        for reader in ("a.stale-1", "a.stale-2"):
            assert votes.set(article, reader, "love").status_code == 202
    wait_until(lambda: public_tally(stack, article)["total"] == 2, what="the other readers")
    before = public_tally(stack, article)  # what a cache keeps serving: love 2

    page = context.new_page()
    edge = StaleEdge(page, article, before)
    page.goto(f"{stack.reader.url}/demo?article={article}")
    expect_state(page, article, "Love", pressed=False, count="2")
    button(page, article, "Love").click()
    expect_state(page, article, "Love", pressed=True, count="3")
    token = page_token(page)
    wait_for_server(stack, token, article, "love", 3)
    after = public_tally(stack, article)  # includes the reader's vote: love 3

    edge.serve(page, after)  # a tally that includes the vote: counted once, not twice
    assert shown(page, article, "Love") == ("true", "3")
    edge.serve(page, before)  # an older tally again: the vote stays counted
    assert shown(page, article, "Love") == ("true", "3")

    # A new page view with the stale bulk body and stream: the own-votes read (fresher, and
    # saying the reader's vote is in it) decides.
    with page.expect_response(lambda r: "/v1/me/reactions" in r.url):
        page.reload()
    expect_state(page, article, "Love", pressed=True, count="3")
    edge.serve(page, before)
    assert shown(page, article, "Love") == ("true", "3")


def test_a_change_of_the_sites_reader_clears_what_the_bar_said_of_the_last_one(
    context: BrowserContext, stack: Stack
) -> None:
    alice, bob = stack.site_token("alice"), stack.site_token("bob")
    context.add_init_script(PROVIDER_SCRIPT % json.dumps(alice))
    page = bar_page(context, stack, "w-switch")
    status = page.locator('reaction-bar[article="w-switch"]').get_by_role("status")
    expect_state(page, "w-switch", "Like", pressed=False, count="0")
    button(page, "w-switch", "Like").click()
    expect(status).to_have_text("Your reaction: Like.")
    switch = "t => customElements.get('reaction-bar').setTokenProvider(async () => t)"
    page.evaluate(switch, bob)
    expect_state(page, "w-switch", "Like", pressed=False, count="1")
    expect(status).to_have_text("")
