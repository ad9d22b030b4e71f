"""The widget at its immutable, versioned URL, pinned with Subresource Integrity: the integrity
value GET /v1/widget names is the SHA-384 of the bytes served."""

from __future__ import annotations

import base64
import hashlib
import re

import httpx
import pytest

from tests.support import assert_error
from widget.build import CLASSIC, MODULE

IMMUTABLE = "public, max-age=31536000, immutable"


def sri(body: bytes) -> str:
    """A Subresource Integrity value, as a browser checks it."""
    return "sha384-" + base64.b64encode(hashlib.sha384(body).digest()).decode()


@pytest.mark.parametrize("form", ["classic", "module"])
async def test_the_versioned_widget_matches_its_integrity(
    http: httpx.AsyncClient, form: str
) -> None:
    info = await http.get("/v1/widget")
    assert info.status_code == 200
    assert info.headers["cache-control"] == "public, max-age=60"
    body = info.json() if form == "classic" else info.json()["module"]
    source = (CLASSIC if form == "classic" else MODULE).read_bytes()
    suffix = ".js" if form == "classic" else ".mjs"
    # The version comes from the content: a new widget is a new URL.
    assert body["version"] == hashlib.sha384(source).hexdigest()[:16]
    assert body["path"] == f"/widget.{body['version']}{suffix}"

    for encoding in ("gzip", "identity"):
        served = await http.get(body["path"], headers={"Accept-Encoding": encoding})
        assert served.status_code == 200
        assert served.headers["cache-control"] == IMMUTABLE
        assert served.headers["content-type"] == "text/javascript; charset=utf-8"
        assert served.headers.get("content-encoding", "identity") == encoding
        # SRI is computed on the decoded body, whatever the transfer encoding.
        assert sri(served.content) == body["integrity"]
        assert served.content == source
    unchanged = await http.get(body["path"], headers={"If-None-Match": served.headers["etag"]})
    assert unchanged.status_code == 304
    assert unchanged.headers["cache-control"] == IMMUTABLE

    # The unversioned URL still serves the same widget, briefly cached.
    plain = await http.get("/widget" + suffix)
    assert plain.content == source
    assert plain.headers["cache-control"] == "public, max-age=300"


async def test_an_unknown_version_is_404(http: httpx.AsyncClient) -> None:
    info = (await http.get("/v1/widget")).json()
    current, module = info["version"], info["module"]["version"]
    other = "0" * 16 if current != "0" * 16 else "1" * 16
    for path in (
        f"/widget.{other}.js",
        "/widget.latest.js",
        f"/widget.{current}x.js",
        f"/widget.{current}.mjs",  # each form has its own version
        f"/widget.{module}.js",
    ):
        response = assert_error(await http.get(path), 404, "unknown_widget_version")
        assert "GET /v1/widget" in response["error"]["message"]


async def test_the_style_hash_allows_the_server_rendered_bars_stylesheet(
    http: httpx.AsyncClient,
) -> None:
    markup = (await http.get("/v1/articles/csp-1/reactions.html")).text
    (stylesheet,) = re.findall(r"<style>(.*?)</style>", markup)
    digest = hashlib.sha256(stylesheet.encode()).digest()
    # As a Content-Security-Policy hash-source: the <style> element's text, hashed.
    expected = "sha256-" + base64.b64encode(digest).decode()
    assert (await http.get("/v1/widget")).json()["style_hash"] == expected
