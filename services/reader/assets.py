"""The widget, the demo page, the bar's stylesheet and the reaction-type config in every
served language, read and rendered once."""

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

    @classmethod
    def of(cls, body: bytes) -> Script:
        """`body` prepared to be served."""
        digest = hashlib.sha384(body).digest()
        return cls(
            body=body,
            gzipped=gzip.compress(body, 9, mtime=0),
            etag=etag_of(body),
            version=digest.hex()[:16],
            integrity="sha384-" + base64.b64encode(digest).decode(),
        )


@dataclass(frozen=True, slots=True)
class StaticAssets:
    """What `/v1/config`, `/v1/widget`, the widget's URLs, the bar fragment and `/demo`
    serve, prepared at start-up."""

    config_bodies: dict[str, bytes]
    widget: Script
    widget_path: str
    widget_info: bytes
    bar_css: str
    demo_template: str

    @classmethod
    def load(cls, reactions: ReactionSet) -> StaticAssets:
        """Read the static files and render the config of `reactions` in each language."""
        widget = Script.of((STATIC_DIR / "widget.js").read_bytes())
        widget_path = f"/widget.{widget.version}.js"
        return cls(
            config_bodies={lang: config_body(reactions, lang) for lang in reactions.languages},
            widget=widget,
            widget_path=widget_path,
            widget_info=orjson.dumps(
                {"path": widget_path, "integrity": widget.integrity, "version": widget.version}
            ),
            bar_css=(STATIC_DIR / "bar.css").read_text().replace("\n", ""),
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
