"""The widget, the demo page and the reaction-type config, read and rendered once."""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import orjson

from services.reader.responses import etag_of
from shared.reactions import ReactionSet

STATIC_DIR: Final = Path(__file__).parent / "static"


@dataclass(frozen=True, slots=True)
class StaticAssets:
    """What `/v1/config`, `/widget.js` and `/demo` serve, prepared at start-up."""

    config_body: bytes
    widget_js: bytes
    widget_gz: bytes
    widget_etag: str
    demo_template: str

    @classmethod
    def load(cls, reactions: ReactionSet) -> StaticAssets:
        """Read the static files and render the config of `reactions`."""
        widget_js = (STATIC_DIR / "widget.js").read_bytes()
        return cls(
            config_body=orjson.dumps({"reactions": [t.model_dump() for t in reactions.types]}),
            widget_js=widget_js,
            widget_gz=gzip.compress(widget_js, 9, mtime=0),
            widget_etag=etag_of(widget_js),
            demo_template=(STATIC_DIR / "demo.html").read_text(),
        )
