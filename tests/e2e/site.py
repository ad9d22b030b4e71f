"""A news site for the browser tests: a page server of its own on a loopback port (another
origin than the reader's and ingest's, as in production), serving the pages a test puts
in, with the reader's server-rendered bars included as a site's templates would."""

from __future__ import annotations

import itertools
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Final

import httpx
from playwright.sync_api import BrowserContext, Page

from deploy.local.process import free_port
from tests.e2e.bars import Stack

PAGE: Final = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>The Daily Example</title>
<style>:root {{ color-scheme: light dark; font: 18px/1.5 system-ui, sans-serif; }}</style>
</head>
<body>
<main>
<h1>A story with its reactions</h1>
<p>The counts below were rendered by the reader and included by the site's server.</p>
{body}
</main>
{scripts}
</body>
</html>
"""


def bar_html(stack: Stack, article: str, **params: str | int) -> str:
    """The reader's server-rendered bar of `article`, as a site's server fetches it."""
    response = httpx.get(
        f"{stack.reader.url}/v1/articles/{article}/reactions.html", params=params, timeout=10
    )
    assert response.status_code == 200, response.text
    return response.text


class NewsSite:
    """The site's page server; `close` stops it."""

    def __init__(self) -> None:
        self.pages: dict[str, bytes] = {}
        self._names = itertools.count()
        pages = self.pages

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                page = pages.get(self.path)
                self.send_response(200 if page is not None else 404)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(page or b"")))
                self.end_headers()
                self.wfile.write(page or b"")

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        self.origin = f"http://127.0.0.1:{self._server.server_port}"

    def open(
        self, context: BrowserContext, body: str, scripts: str = "", page: Page | None = None
    ) -> Page:
        """A page of the site (in `page`, else a new one) with `body` in its main column and
        `scripts` after it."""
        path = f"/story-{next(self._names)}"
        self.pages[path] = PAGE.format(body=body, scripts=scripts).encode()
        page = page or context.new_page()
        page.goto(self.origin + path)
        return page

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
