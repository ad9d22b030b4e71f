"""The widget on a news site's page in Chromium, writing through the reference edge in front
of ingest (deploy/nginx/ingest.conf.template), as compose and `make run` deploy it: the
token, the preflight and the votes pass nginx, and when the edge itself refuses the
reader's address the widget can read the refusal and says so."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import BrowserContext, Page, Request, expect

from deploy.local.edge import IngestEdge, NginxEdge
from deploy.local.process import free_port
from tests.e2e.bars import Stack, button, expect_state, page_token, wait_for_server
from tests.e2e.site import NewsSite
from tests.support import requests_awaiting_bodies, wait_until

# What the edge lets one address have in flight (the template's limit_conn).
IN_FLIGHT_PER_ADDRESS = 32


@pytest.fixture(scope="module")
def write_edge(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NginxEdge]:
    """nginx in front of the stack's ingest; a client timeout longer than a test takes."""
    edge = NginxEdge(
        tmp_path_factory.mktemp("write-edge"),
        free_port(),
        stack.reader.port,
        ingest=IngestEdge(free_port(), f"127.0.0.1:{stack.ingest.port}", client_timeout="60s"),
    )
    edge.start()
    yield edge
    edge.stop()


def edge_page(
    context: BrowserContext, site: NewsSite, stack: Stack, edge: NginxEdge, article: str
) -> Page:
    """A page of the site with one bar, its widget from the reader, its votes to the edge."""
    script = f'<script src="{stack.reader.url}/widget.js" data-ingest="{edge.ingest_url}" async>'
    return site.open(
        context, f'<reaction-bar article="{article}"></reaction-bar>', script + "</script>"
    )


def test_the_token_and_votes_pass_the_write_edge(
    context: BrowserContext, site: NewsSite, stack: Stack, write_edge: NginxEdge
) -> None:
    writes: list[Request] = []
    context.on("request", lambda r: writes.append(r) if r.method in ("POST", "OPTIONS") else None)
    page = edge_page(context, site, stack, write_edge, "we-pass")
    button(page, "we-pass", "Love").click()
    expect_state(page, "we-pass", "Love", pressed=True, count="1")
    wait_for_server(stack, page_token(page), "we-pass", "love", 1)
    paths = {(r.method, r.url) for r in writes}
    assert ("POST", f"{write_edge.ingest_url}/v1/readers") in paths
    assert ("POST", f"{write_edge.ingest_url}/v1/votes") in paths
    assert all(r.url.startswith(write_edge.ingest_url) for r in writes), paths


def test_the_widget_says_too_fast_when_the_edge_refuses_the_address(
    context: BrowserContext, site: NewsSite, stack: Stack, write_edge: NginxEdge
) -> None:
    page = edge_page(context, site, stack, write_edge, "we-busy")
    # A first vote: the reader has a token and the browser its preflight for the vote URL.
    button(page, "we-busy", "Love").click()
    expect_state(page, "we-busy", "Love", pressed=True, count="1")
    token = page_token(page)
    wait_for_server(stack, token, "we-busy", "love", 1)

    assert write_edge.ingest is not None
    with requests_awaiting_bodies(write_edge.ingest.port, IN_FLIGHT_PER_ADDRESS):
        # The page's address (loopback, as this test's) has its share in flight.
        wait_until(
            lambda: httpx.get(f"{write_edge.ingest_url}/openapi.json").status_code == 429,
            what="the edge to refuse this address",
        )
        button(page, "we-busy", "Angry").click()
        message = page.locator('reaction-bar[article="we-busy"]').get_by_role("status")
        # The refusal was readable (CORS) and read as a 429, not as a network failure.
        expect(message).to_contain_text("wait a moment")
        expect_state(page, "we-busy", "Love", pressed=True, count="1")

    wait_until(
        lambda: httpx.get(f"{write_edge.ingest_url}/openapi.json").status_code == 200,
        what="the edge to serve this address again",
    )
    button(page, "we-busy", "Angry").click()
    expect_state(page, "we-busy", "Angry", pressed=True, count="1")
    wait_for_server(stack, token, "we-busy", "angry", 1)
