"""A news site for the browser tests: a page server of its own on a loopback port (another
origin than the reader's and ingest's, as in production), serving the pages a test puts
up, with the reader's server-rendered bars included as a site's templates would."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Final, Literal

import httpx
from playwright.sync_api import BrowserContext, Page

from deploy.local.process import free_port
from tests.e2e.bars import Stack

PAGE: Final = """<!doctype html>
<html lang="{lang}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>The Daily Example</title>
<link rel="stylesheet" href="/site.css">
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
# The site's own stylesheet, a file of its origin: a page under a strict CSP may load it.
# Its background set, not left to the browser: axe takes an unset one for white.
SITE_CSS: Final = (
    ":root { color-scheme: light dark; background: Canvas; color: CanvasText; "
    "font: 18px/1.5 system-ui, sans-serif; }"
)


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
        self.pages: dict[str, tuple[bytes, str, dict[str, str]]] = {
            "/site.css": (SITE_CSS.encode(), "text/css", {})
        }
        self._names = itertools.count()
        pages = self.pages

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body, kind, headers = pages.get(self.path, (b"", "text/plain", {}))
                self.send_response(200 if self.path in pages else 404)
                self.send_header("Content-Type", f"{kind}; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        self.origin = f"http://127.0.0.1:{self._server.server_port}"

    def put(
        self,
        path: str,
        content: str,
        headers: Mapping[str, str] | None = None,
        kind: str = "text/html",
    ) -> str:
        """Serve `content` (of type `kind`) at `path` from now on, with `headers`; its
        address."""
        self.pages[path] = (content.encode(), kind, dict(headers or {}))
        return self.origin + path

    def open(
        self,
        context: BrowserContext,
        body: str,
        scripts: str = "",
        page: Page | None = None,
        *,
        lang: str = "en",
        headers: Mapping[str, str] | None = None,
        wait_until: Literal["domcontentloaded", "load"] = "load",
    ) -> Page:
        """A page of the site (in `page`, else a new one) with `body` in its main column and
        `scripts` after it, served with `headers`, once it has loaded (or been parsed)."""
        html = PAGE.format(body=body, scripts=scripts, lang=lang)
        url = self.put(f"/story-{next(self._names)}", html, headers)
        page = page or context.new_page()
        page.goto(url, wait_until=wait_until)
        return page

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
