"""What a language changes in what the reader serves: the `lang` parameter, the text
direction, and counts written as `Intl.NumberFormat(lang, {notation: "compact"})` writes them
in the browser, so a server-rendered bar reads as the widget will."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Final, NamedTuple

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
NBSP: Final = "\u00a0"


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


class Scale(NamedTuple):
    """Numbers from 10**start up are divided by 10**power and written with `suffix`."""

    start: int
    power: int
    suffix: str
    # Arabic's plural "few" form, for a whole number from 3 to 9 shown with this scale.
    few: str | None = None


@dataclass(frozen=True, slots=True)
class CompactStyle:
    """One language's compact notation (CLDR "short" decimal formats, as Chromium has them)."""

    decimal: str
    group: str
    # In order; a number below the first scale is written whole.
    scales: tuple[Scale, ...]


def _style(decimal: str, group: str, *scales: tuple[int, int, str] | Scale) -> CompactStyle:
    return CompactStyle(decimal, group, tuple(Scale(*scale) for scale in scales))


# The built-in languages. A language is looked up by its exact tag: regional variants differ
# (de-AT groups with a space, es-419 writes "K"), and a language without an entry gets plain
# numbers.
COMPACT: Final[dict[str, CompactStyle]] = {
    "en": _style(".", ",", (3, 3, "K"), (6, 6, "M"), (9, 9, "B"), (12, 12, "T")),
    "de": _style(",", ".", (6, 6, f"{NBSP}Mio."), (9, 9, f"{NBSP}Mrd."), (12, 12, f"{NBSP}Bio.")),
    "fr": _style(
        ",",
        "\u202f",
        (3, 3, f"{NBSP}k"),
        (6, 6, f"{NBSP}M"),
        (9, 9, f"{NBSP}Md"),
        (12, 12, f"{NBSP}Bn"),
    ),
    "es": _style(
        ",",
        ".",
        (3, 3, f"{NBSP}mil"),
        (6, 6, f"{NBSP}M"),
        (9, 6, f"{NBSP}M"),  # "1000 M": a thousand million has no short word of its own
        (10, 9, f"{NBSP}mil{NBSP}M"),
        (12, 12, f"{NBSP}B"),
    ),
    "it": _style(
        ",", ".", (3, 3, "K"), (6, 6, f"{NBSP}Mln"), (9, 9, f"{NBSP}Mld"), (12, 12, f"{NBSP}Bln")
    ),
    "ar": _style(
        ".",
        ",",
        Scale(3, 3, f"{NBSP}ألف", few=f"{NBSP}آلاف"),
        (6, 6, f"{NBSP}مليون"),
        (9, 9, f"{NBSP}مليار"),
        (12, 12, f"{NBSP}ترليون"),
    ),
}


def compact_count(count: int, lang: str) -> str:
    """`count` in the compact notation of `lang` (en: 1234 → "1.2K", de: "1234"); in a
    language without a known notation, the plain number."""
    style = COMPACT.get(lang)
    if style is None or count < 0:
        return str(count)
    scale = _scale(style, len(str(count)) - 1)
    text, magnitude = _rounded(count, scale, style)
    # Rounding may carry into the next scale (999,999 → 1000K → 1M), as in ICU.
    if (carried := _scale(style, magnitude)) != scale:
        text, _ = _rounded(count, carried, style)
    return text


def _scale(style: CompactStyle, magnitude: int) -> Scale | None:
    found = None
    for scale in style.scales:
        if scale.start <= magnitude:
            found = scale
    return found


def _rounded(count: int, scale: Scale | None, style: CompactStyle) -> tuple[str, int]:
    # ICU's compact rounding: one decimal while one digit is left of the point, else a whole
    # number; halves away from zero. Integer arithmetic, so no float is ever off by one.
    power, suffix = (scale.power, scale.suffix) if scale else (0, "")
    unit = 10**power
    if count // unit < 10:
        tenths = (count * 10 * 2 + unit) // (2 * unit)
        whole, fraction = divmod(tenths, 10)
        digits = str(whole)
        number = digits + (f"{style.decimal}{fraction}" if fraction else "")
        if scale and scale.few and not fraction and 3 <= whole <= 9:
            suffix = scale.few
    else:
        digits = str((count * 2 + unit) // (2 * unit))
        number = _grouped(digits, style.group)
    return number + suffix, power + len(digits) - 1


def _grouped(digits: str, separator: str) -> str:
    # Compact notation groups only numbers of five digits or more ("1234", "12,345").
    if len(digits) < 5:
        return digits
    head = len(digits) % 3 or 3
    return separator.join(
        [digits[:head], *(digits[i : i + 3] for i in range(head, len(digits), 3))]
    )
