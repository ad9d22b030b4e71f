"""The widget, the demo page, the bar's stylesheet and the reaction-type config in every
served language, read and rendered once."""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import orjson

from services.reader.locale import direction
from services.reader.responses import etag_of
from shared.reactions import ReactionSet

STATIC_DIR: Final = Path(__file__).parent / "static"


@dataclass(frozen=True, slots=True)
class StaticAssets:
    """What `/v1/config`, `/widget.js`, the bar fragment and `/demo` serve, prepared at
    start-up."""

    config_bodies: dict[str, bytes]
    widget_js: bytes
    widget_gz: bytes
    widget_etag: str
    bar_css: str
    demo_template: str

    @classmethod
    def load(cls, reactions: ReactionSet) -> StaticAssets:
        """Read the static files and render the config of `reactions` in each language."""
        widget_js = (STATIC_DIR / "widget.js").read_bytes()
        return cls(
            config_bodies={lang: config_body(reactions, lang) for lang in reactions.languages},
            widget_js=widget_js,
            widget_gz=gzip.compress(widget_js, 9, mtime=0),
            widget_etag=etag_of(widget_js),
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
