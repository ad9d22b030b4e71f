"""The widget (classic script and ES module), the demo page, the bar's stylesheet and the
reaction-type config in every served language, read and rendered once.

The widget's files are the npm package in `widget/` at the repository's root, which the
reader serves as they are (the wheel carries them as the `widget` package's data).
"""

from __future__ import annotations

import base64
import gzip
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import orjson

from services.reader.locale import direction
from services.reader.responses import etag_of
from shared.reactions import ReactionSet
from widget.build import CLASSIC, MODULE, stylesheet

STATIC_DIR: Final = Path(__file__).parent / "static"


@dataclass(frozen=True, slots=True)
class Script:
    """A script as served: its bytes, gzipped, its validator, and the version and
    Subresource Integrity value of its immutable URL, both from its content."""

    body: bytes
    gzipped: bytes
    etag: str
    version: str
    integrity: str
    path: str

    @classmethod
    def of(cls, body: bytes, suffix: str) -> Script:
        """`body` prepared to be served, its immutable URL ending in `suffix`."""
        digest = hashlib.sha384(body).digest()
        version = digest.hex()[:16]
        return cls(
            body=body,
            gzipped=gzip.compress(body, 9, mtime=0),
            etag=etag_of(body),
            version=version,
            integrity="sha384-" + base64.b64encode(digest).decode(),
            path=f"/widget.{version}{suffix}",
        )

    def info(self) -> dict[str, str]:
        """Its immutable URL, integrity value and version, as `/v1/widget` names them."""
        return {"path": self.path, "integrity": self.integrity, "version": self.version}


@dataclass(frozen=True, slots=True)
class StaticAssets:
    """What `/v1/config`, `/v1/widget`, the widget's URLs, the bar fragment and `/demo`
    serve, prepared at start-up."""

    config_bodies: dict[str, bytes]
    widget: Script
    module: Script
    widget_info: bytes
    bar_css: str
    demo_template: str

    @classmethod
    def load(cls, reactions: ReactionSet) -> StaticAssets:
        """Read the static files and render the config of `reactions` in each language."""
        widget = Script.of(CLASSIC.read_bytes(), ".js")
        module = Script.of(MODULE.read_bytes(), ".mjs")
        bar_css = stylesheet()
        # The server-rendered bar's <style>, as a Content-Security-Policy names it in
        # style-src: a strict page allows that stylesheet and no other inline style.
        style_hash = base64.b64encode(hashlib.sha256(bar_css.encode()).digest()).decode()
        return cls(
            config_bodies={lang: config_body(reactions, lang) for lang in reactions.languages},
            widget=widget,
            module=module,
            widget_info=orjson.dumps(
                {**widget.info(), "module": module.info(), "style_hash": f"sha256-{style_hash}"}
            ),
            bar_css=bar_css,
            demo_template=(STATIC_DIR / "demo.html").read_text(),
        )


def config_body(reactions: ReactionSet, lang: str) -> bytes:
    """`/v1/config` in `lang`: the bar's name, its direction and each type's label in it."""
    return orjson.dumps(
        {
            "lang": lang,
            "dir": direction(lang),
            "group_label": reactions.group_label(lang),
            "reactions": [
                {"id": t.id, "label": t.label_in(lang), "emoji": t.emoji} for t in reactions.types
            ],
        }
    )
