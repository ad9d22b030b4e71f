"""Counts in each built-in language's compact notation, as Chromium's Intl.NumberFormat(lang,
{notation: "compact"}) writes them (the browser test compares the two over many numbers),
and the text direction of a language."""

from __future__ import annotations

import pytest

from services.reader.locale import COMPACT, compact_count, direction
from shared.reactions import DEFAULT_TYPES, ReactionSet

NB = "\u00a0"

# Read off Chromium 156.
CASES = {
    "en": {
        0: "0",
        7: "7",
        999: "999",
        1000: "1K",
        1049: "1K",
        1050: "1.1K",
        1234: "1.2K",
        1950: "2K",
        9999: "10K",
        12345: "12K",
        99999: "100K",
        123456: "123K",
        999999: "1M",
        1234567: "1.2M",
        999999999: "1B",
        1234567890123: "1.2T",
        1234567890123456: "1235T",
    },
    "de": {
        999: "999",
        1234: "1234",
        12345: "12.345",
        999999: "999.999",
        1234567: f"1,2{NB}Mio.",
        9999999: f"10{NB}Mio.",
        1234567890: f"1,2{NB}Mrd.",
        1234567890123: f"1,2{NB}Bio.",
    },
    "fr": {1234: f"1,2{NB}k", 12345: f"12{NB}k", 1234567: f"1,2{NB}M", 1234567890: f"1,2{NB}Md"},
    "es": {
        1234: f"1,2{NB}mil",
        1234567: f"1,2{NB}M",
        999999999: f"1000{NB}M",
        1234567890: f"1235{NB}M",
        12345678901: f"12{NB}mil{NB}M",
        1234567890123: f"1,2{NB}B",
    },
    "it": {1234: "1,2K", 1234567: f"1,2{NB}Mln", 1234567890: f"1,2{NB}Mld"},
    "ar": {
        1234: f"1.2{NB}ألف",
        2000: f"2{NB}ألف",
        2950: f"3{NB}آلاف",  # Arabic's "few" form: a whole 3 to 9 thousand
        9000: f"9{NB}آلاف",
        9500: f"9.5{NB}ألف",
        9950: f"10{NB}ألف",
        3000000: f"3{NB}مليون",
        1234567890123: f"1.2{NB}ترليون",
    },
}


@pytest.mark.parametrize("lang", sorted(CASES))
def test_compact_counts_read_as_the_browser_writes_them(lang: str) -> None:
    for count, shown in CASES[lang].items():
        assert compact_count(count, lang) == shown, (lang, count)


def test_every_built_in_language_has_its_notation() -> None:
    languages = ReactionSet.load(list(DEFAULT_TYPES)).languages
    assert languages == set(COMPACT) == {"en", "de", "fr", "es", "it", "ar"}


def test_a_language_without_a_known_notation_gets_plain_numbers() -> None:
    # Regional variants write differently (de-AT groups with a space): never guessed.
    for lang in ("ja", "de-AT", "pt-BR"):
        assert compact_count(1234567, lang) == "1234567"


def test_direction() -> None:
    assert direction("ar") == direction("he-IL") == "rtl"
    assert direction("en") == direction("de-AT") == "ltr"
