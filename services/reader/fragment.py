"""A bar rendered on the server: a tally as HTML a site includes inside `<reaction-bar>`, so a
reader sees the counts before (or without) JavaScript and the widget upgrades it in place.

The markup is a declarative shadow root with the bar's own stylesheet (the widget's, from
`widget/src/bar.css`), so it looks like the widget's bar from the first paint; README "The
bar as HTML" documents its structure, which the widget reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from services.reader.cache import Tally
from services.reader.locale import compact_count, direction
from shared.reactions import ReactionSet, ReactionType


def render_bar(
    article_id: str,
    tally: Tally,
    reactions: ReactionSet,
    shown: Sequence[ReactionType],
    lang: str,
    hide_counts_below: int,
    stylesheet: str,
) -> bytes:
    """The bar of `article_id` with the `shown` types' counts in `lang`; a count below
    `hide_counts_below` shows no number."""
    counts = dict(zip(reactions.ids, tally.counts, strict=True))
    name = escape(reactions.group_label(lang))
    threshold = f' data-hide-counts-below="{hide_counts_below}"' if hide_counts_below else ""
    items = "".join(
        _reaction(reaction, counts[reaction.id], lang, hide_counts_below) for reaction in shown
    )
    return (
        '<template shadowrootmode="open">'
        f"<style>{stylesheet}</style>"
        f'<div class="bar" part="bar" role="group" aria-label="{name}"'
        f' lang="{escape(lang)}" dir="{direction(lang)}" data-article="{escape(article_id)}"'
        f' data-seq="{tally.seq}"{threshold}>{items}</div>'
        '<p class="msg" part="message" role="status"></p>'
        "</template>"
    ).encode()


def _reaction(reaction: ReactionType, count: int, lang: str, hide_counts_below: int) -> str:
    if count < hide_counts_below:
        number = '<span class="n" part="count"></span>'
    else:
        shown = escape(compact_count(count, lang))
        number = f'<span class="n" part="count" data-count="{count}">{shown}</span>'
    return (
        f'<span class="rx" part="button" data-reaction="{reaction.id}">'
        f'<span class="e" part="emoji" aria-hidden="true">{escape(reaction.emoji)}</span> '
        f'<span class="l" part="label">{escape(reaction.label_in(lang))}</span> {number}</span>'
    )
