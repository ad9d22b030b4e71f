"""What a language changes in what the reader serves: the `lang` parameter and the text
direction."""

from __future__ import annotations

from typing import Annotated, Final

from fastapi import Query

from shared.http import ApiError
from shared.reactions import LANG_PATTERN, ReactionSet, canonical_lang

LangQuery = Annotated[
    str | None,
    Query(
        description="The language of the labels (a language tag: de, de-AT, pt_BR); the "
        "closest one configured is served (de-AT → de), else the configuration's own. The "
        "answer names it.",
        json_schema_extra={"pattern": LANG_PATTERN},
    ),
]

# Languages written right to left, by their primary subtag.
_RTL: Final = frozenset({"ar", "arc", "ckb", "dv", "fa", "he", "ks", "ps", "sd", "ug", "ur", "yi"})


def served_lang(reactions: ReactionSet, requested: str | None) -> str:
    """The configured language closest to `?lang=`; 422 `invalid_lang` for no language tag."""
    if requested is None:
        return reactions.lang
    canonical = canonical_lang(requested)
    if canonical is None:
        raise ApiError(
            422, "invalid_lang", "lang must be a language tag such as en, de, de-AT or pt_BR."
        )
    return reactions.language_for(canonical)


def direction(lang: str) -> str:
    """`rtl` for a language written right to left, else `ltr`."""
    return "rtl" if lang.split("-")[0] in _RTL else "ltr"
