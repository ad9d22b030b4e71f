"""What the widget tests share: the stack they drive, a news site's page, and how they look at
a page's bars, at the token the widget keeps and at what the server recorded."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
from playwright.sync_api import BrowserContext, Locator, Page, expect
from redis import Redis

from deploy.local.client import SyncVoteClient
from deploy.local.services import Service
from shared.tallies import counts_key
from tests.support import wait_until

SITE_ISSUER: Final = "https://news.example"
SITE_AUDIENCE: Final = "reactions-widget"
TOKEN_KEY: Final = "reactions.reader-token"
TIMEOUT_MS: Final = 30_000

expect.set_options(timeout=TIMEOUT_MS)


@dataclass(frozen=True)
class Stack:
    """The services a widget test drives, and the secret of the site's logged-in readers."""

    ingest: Service
    reader: Service
    site_secret: bytes
    topic: str

    def site_token(self, subject: str, ttl_s: int = 3600) -> str:
        """A token of the site's login for `subject`, as a site's backend would issue it."""
        now = int(time.time())
        claims = {
            "iss": SITE_ISSUER,
            "aud": SITE_AUDIENCE,
            "sub": subject,
            "iat": now,
            "exp": now + ttl_s,
        }
        return jwt.encode(claims, self.site_secret, algorithm="HS256")


def widget_script(stack: Stack, *, module: bool = False, attrs: str = "") -> str:
    """The widget's script tag as a site writes it: from the reader, votes to ingest; the
    classic script, or the ES module."""
    src, kind = ("/widget.mjs", ' type="module"') if module else ("/widget.js", " async")
    return (
        f'<script src="{stack.reader.url}{src}" data-ingest="{stack.ingest.url}"{kind}{attrs}>'
        "</script>"
    )


def news_page(stack: Stack, body: str) -> str:
    """A site's page: `body`, then the widget from the reader (votes to ingest)."""
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>News</title></head>'
        f"<body>{body}{widget_script(stack)}</body></html>"
    )


def seed(redis_url: str, article: str, counts: dict[str, int | str]) -> None:
    """Counts of `article` straight into Redis, and its fence when `counts` has `@fence`.
    Without one the article's `seq` stays -1, and votes sent later are applied on top."""
    redis = Redis.from_url(redis_url)
    try:
        redis.hset(counts_key(article), mapping=counts)
    finally:
        redis.close()


def open_streams(stack: Stack) -> float:
    """The reader's open SSE streams now (its `reactions_reader_sse_clients` gauge)."""
    text = httpx.get(f"{stack.reader.url}/metrics").text
    match = re.search(r"^reactions_reader_sse_clients (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else -1


def wait_in_page(
    page: Page, check: Callable[[], bool], *, timeout: float = 30.0, what: str = "condition"
) -> None:
    """Poll `check` over what the browser reported (requests, routes, console lines): the sync
    API hands Playwright's events to Python only while a call into the page runs, so each poll
    makes one."""
    wait_until(lambda: page.evaluate("1") == 1 and check(), timeout=timeout, what=what)


def stream_ids(urls: Iterable[str]) -> list[list[str]]:
    """The articles of each page stream (`/v1/stream?ids=`) among these request URLs, in order."""
    return [parse_qs(urlsplit(u).query)["ids"][0].split(",") for u in urls if "/v1/stream?" in u]


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
    """The button of `label` shows `count` and is pressed or not, now or within the timeout."""
    target = button(page, article, label)
    expect(target).to_have_attribute("aria-pressed", "true" if pressed else "false")
    expect(target.locator(".n")).to_have_text(count)


def stored_token(page: Page) -> dict[str, Any] | None:
    """The anonymous reader's token as the widget keeps it in localStorage, or None."""
    raw = page.evaluate(f"localStorage.getItem('{TOKEN_KEY}')")
    if raw is None:
        return None
    held: dict[str, Any] = json.loads(raw)
    return held


def page_token(page: Page) -> str:
    """The token the page's widget holds, once it has one: the reader has clicked."""
    wait_until(lambda: stored_token(page) is not None, what="the widget's token")
    held = stored_token(page)
    assert held is not None
    assert re.fullmatch(r"a\.[A-Za-z0-9_-]{22}", held["reader_id"]), held
    token: str = held["token"]
    return token


def own_vote(stack: Stack, token: str, article: str) -> dict[str, Any]:
    """The token's reader's entry for `article` from the own-votes read, with reader_id."""
    with SyncVoteClient(reader_url=stack.reader.url) as votes:
        response = votes.send(votes.api.mine(token, [article]))
    assert response.status_code == 200, response.text
    body = response.json()
    entry: dict[str, Any] = body["articles"][article]
    return {**entry, "reader_id": body["reader_id"]}


def public_tally(stack: Stack, article: str) -> dict[str, Any]:
    """The article's public tally, now."""
    with SyncVoteClient(reader_url=stack.reader.url) as votes:
        body: dict[str, Any] = votes.tally(article).json()
    return body


def wait_for_server(stack: Stack, token: str, article: str, mine: str | None, total: int) -> None:
    """Until the pipeline has applied the browser's vote: its own choice and the total."""
    wait_until(
        lambda: (t := own_vote(stack, token, article))["mine"] == mine and t["total"] == total,
        timeout=60,
        what=f"{article}: mine={mine} total={total}",
    )
