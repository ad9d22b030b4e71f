"""axe-core audits in Chromium, light and dark: the demo page with the widget's bars, the bar
as server-rendered HTML on a site's page without the widget, a page of 50 bars, and a German
page with bars in German, in Arabic (right to left), taken over from the server's markup,
closed to votes and compact. No violation is allowed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from deploy.local.redis import RedisServer
from shared.reactions import DEFAULT_TYPES
from tests.e2e.axe import audit, described
from tests.e2e.bars import Stack, seed, widget_script
from tests.e2e.site import NewsSite, bar_html

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
SCHEMES = ("light", "dark")


def audited(page: Page, name: str, bars: dict[str, str] | None = None) -> None:
    """No violation in either colour scheme; a screenshot of each in test-artifacts/, and of
    each of `bars` (a name for its CSS selector)."""
    ARTIFACTS.mkdir(exist_ok=True)
    for scheme in SCHEMES:
        # Reduced motion: no colour transition is caught half-way by the contrast check.
        page.emulate_media(color_scheme=scheme, reduced_motion="reduce")
        violations = audit(page)
        page.screenshot(path=str(ARTIFACTS / f"a11y-{name}-{scheme}.png"), full_page=True)
        for bar, selector in (bars or {}).items():
            path = ARTIFACTS / f"bar-{bar}-{scheme}.png"
            page.locator(selector).screenshot(path=str(path))
        assert violations == [], f"{name}, {scheme}:\n{described(violations)}"


def test_the_demo_page(browser: Browser, stack: Stack) -> None:
    with browser.new_context() as context:
        page = context.new_page()
        page.goto(f"{stack.reader.url}/demo")
        # Every bar built: five bars of seven buttons.
        expect(page.get_by_role("button")).to_have_count(5 * len(DEFAULT_TYPES))
        audited(page, "demo")


@pytest.fixture
def seeded(redis_server: RedisServer) -> None:
    """Counts for the bars of the site's page: small, large, and some under a threshold."""
    seed(redis_server.url, "a11y-1", {"like": 1234, "love": 3, "@fence": "0:5"})
    seed(redis_server.url, "a11y-2", {"wow": 1_234_567, "sad": 2, "@fence": "1:9"})


@pytest.mark.usefixtures("seeded")
def test_the_bar_as_html_without_the_widget(browser: Browser, stack: Stack, site: NewsSite) -> None:
    body = "\n".join(
        [
            '<section aria-labelledby="r1"><h2 id="r1">What\'s your reaction?</h2>',
            f'<reaction-bar article="a11y-1">{bar_html(stack, "a11y-1")}</reaction-bar>',
            "</section>",
            "<h2>Dieselbe Geschichte, auf Deutsch</h2>",
            '<reaction-bar article="a11y-2">'
            f"{bar_html(stack, 'a11y-2', lang='de', **{'hide-counts-below': 5})}</reaction-bar>",
            "<h2>مع التفاعلات</h2>",
            '<reaction-bar article="a11y-2">'
            f"{bar_html(stack, 'a11y-2', lang='ar', types='like,sad,wow')}</reaction-bar>",
        ]
    )
    with browser.new_context() as context:
        page = site.open(context, body)  # no widget: the markup as the reader sent it
        expect(page.get_by_role("group")).to_have_count(3)
        audited(page, "bar-html")


def test_a_page_of_50_bars(browser: Browser, stack: Stack, site: NewsSite) -> None:
    body = "".join(
        f'<article><h2>Story {i}</h2><reaction-bar article="a11y-long-{i}"></reaction-bar>'
        "</article>"
        for i in range(50)
    )
    with browser.new_context() as context:
        page = site.open(context, body, widget_script(stack))
        expect(page.get_by_role("button")).to_have_count(50 * len(DEFAULT_TYPES))
        audited(page, "50-bars")


def test_german_right_to_left_closed_and_compact_bars(
    browser: Browser, stack: Stack, site: NewsSite, redis_server: RedisServer
) -> None:
    seed(redis_server.url, "a11y-3", {"like": 12345, "love": 42, "sad": 3})
    body = "\n".join(
        [
            '<h2>Wie finden Sie das?</h2><reaction-bar article="a11y-3" id="de"></reaction-bar>',
            "<h2>Vom Server gerendert</h2>",
            f'<reaction-bar article="a11y-3" id="html">{bar_html(stack, "a11y-3", lang="de")}'
            "</reaction-bar>",
            '<h2 lang="ar">ما رأيك؟</h2>',
            '<reaction-bar article="a11y-3" lang="ar" dir="rtl" id="rtl"></reaction-bar>',
            "<h2>Geschlossen</h2>",
            '<reaction-bar article="a11y-3" readonly id="closed"></reaction-bar>',
            "<h2>Kompakt</h2>",
            '<reaction-bar article="a11y-3" compact types="like,love,sad" id="compact">'
            "</reaction-bar>",
        ]
    )
    with browser.new_context() as context:
        page = site.open(context, body, widget_script(stack), lang="de")
        expect(page.get_by_role("button")).to_have_count(4 * len(DEFAULT_TYPES) + 3)
        expect(page.locator("#de").get_by_role("button", name="Gefällt mir 12.345")).to_be_visible()
        expect(page.locator("#html").get_by_role("button", name="Liebe 42")).to_be_visible()
        bars = {"de": "#de", "rtl": "#rtl", "compact": "#compact", "closed": "#closed"}
        audited(page, "bars", bars)


def test_a_light_only_site_keeps_light_bars_for_a_reader_in_dark_mode(
    browser: Browser, stack: Stack, site: NewsSite
) -> None:
    """A site that declares no dark scheme is white for every reader: its bars follow the
    page's color-scheme, not the reader's system alone, so their texts (the status line
    drawn on the page's own background) keep their contrast."""
    body = '<reaction-bar article="a11y-light" readonly></reaction-bar>'
    with browser.new_context(color_scheme="dark") as context:
        page = site.open(context, body, widget_script(stack))
        light_only = ":root { color-scheme: normal; background: #fff; color: #1f2328; }"
        page.add_style_tag(content=light_only)
        expect(page.get_by_role("status")).not_to_be_empty()
        like = page.get_by_role("button", name=re.compile("^Like "))
        assert like.evaluate("b => getComputedStyle(b).backgroundColor") == "rgb(255, 255, 255)"
        violations = audit(page)
        page.screenshot(path=str(ARTIFACTS / "a11y-light-site-dark-reader.png"), full_page=True)
        assert violations == [], described(violations)
