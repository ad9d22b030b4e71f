"""REACTIONS_CONFIG_FILE: labels by language and emoji from YAML or JSON; a bad file refuses to
start."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import httpx
import pytest

from deploy.local.process import ROOT, free_port
from shared.reactions import DEFAULT_TYPES, ReactionSet, canonical_lang
from tests.support import ServiceFactory

YAML = """\
reactions:
  - {id: like, label: Gefällt mir, emoji: "👍"}
  - {id: boo, label: Buh, emoji: "🙈"}
"""
JSON = '{"reactions": [{"id": "like", "label": "J\\u2019aime", "emoji": "👍"}]}'


@pytest.mark.parametrize(("name", "text"), [("display.yaml", YAML), ("display.json", JSON)])
def test_labels_and_emoji_come_from_the_file(tmp_path: Path, name: str, text: str) -> None:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    reactions = ReactionSet.load(["like", "boo", "wow"], path)
    shown = {t.id: (t.label, t.emoji) for t in reactions.types}
    if name.endswith(".yaml"):
        assert shown["like"] == ("Gefällt mir", "👍")
        assert shown["boo"] == ("Buh", "🙈")
    else:
        assert shown["like"] == ("J’aime", "👍")
        assert shown["boo"] == ("Boo", "•")  # not in the file, not a default type
    assert shown["wow"] == ("Wow", "😮")  # a default type keeps its built-in display


async def test_the_reader_serves_the_file_s_labels(
    start_service: ServiceFactory, tmp_path: Path
) -> None:
    path = tmp_path / "display.yaml"
    path.write_text(YAML, encoding="utf-8")
    reader = start_service(
        "reader", env={"REACTIONS_CONFIG_FILE": str(path), "REACTIONS_TYPES": "boo,like"}
    )
    async with httpx.AsyncClient(timeout=10) as http:
        body = (await http.get(f"{reader.url}/v1/config")).json()
    assert body["reactions"] == [
        {"id": "boo", "label": "Buh", "emoji": "🙈"},
        {"id": "like", "label": "Gefällt mir", "emoji": "👍"},
    ]


LANGUAGES = """\
lang: fr
group_label: Vos réactions
group_labels: {en: Your reactions}
reactions:
  - id: like
    label: J’aime
    emoji: "👍"
    labels: {en: Like it, de_ch: Gefällt mir, pt-br: Curti}
  - {id: insightful, label: Éclairant, emoji: "💡", labels: {en: Insightful}}
"""


def test_labels_by_language_with_the_built_in_translations(tmp_path: Path) -> None:
    path = tmp_path / "display.yaml"
    path.write_text(LANGUAGES, encoding="utf-8")
    reactions = ReactionSet.load(["like", "insightful", "sad", "boo"], path)
    assert reactions.lang == "fr"  # the language of every `label` in the file
    # The built-in languages of the built-in types, and the file's (tags in their usual case).
    assert reactions.languages == {"fr", "en", "de", "de-CH", "pt-BR", "es", "it", "ar"}

    def labels(lang: str) -> list[str]:
        return [t.label_in(lang) for t in reactions.types]

    assert [t.label for t in reactions.types] == ["J’aime", "Éclairant", "Triste", "Boo"]
    assert labels("en") == ["Like it", "Insightful", "Sad", "Boo"]
    # A listed type replaces its built-in translations whole: no German "like" but de-CH's.
    assert labels("de") == ["J’aime", "Éclairant", "Traurig", "Boo"]
    assert labels("de-CH") == ["Gefällt mir", "Éclairant", "Traurig", "Boo"]
    assert reactions.group_label("fr") == "Vos réactions"
    assert reactions.group_label("en") == "Your reactions"
    assert reactions.group_label("de") == "Reaktionen"  # built in
    assert reactions.group_label("pt-BR") == "Vos réactions"  # none: the set's language

    # RFC 4647 lookup: the closest served tag, else the set's own language.
    assert reactions.language_for("de-CH") == "de-CH"
    assert reactions.language_for("de-CH-1996") == "de-CH"
    assert reactions.language_for("de-AT") == "de"
    assert reactions.language_for("pt") == "fr"
    assert reactions.language_for("ja") == "fr"


def test_without_a_file_english_is_the_default_and_five_translations_are_built_in(
    tmp_path: Path,
) -> None:
    reactions = ReactionSet.load(list(DEFAULT_TYPES))
    assert reactions.lang == "en"
    assert reactions.languages == {"en", "de", "fr", "es", "it", "ar"}
    for lang in reactions.languages:
        assert len({t.label_in(lang) for t in reactions.types}) == len(DEFAULT_TYPES), lang
    assert [t.label_in("de") for t in reactions.types][:2] == ["Gefällt mir", "Gefällt mir nicht"]
    # A file in Swiss German: the built-in types show their German labels.
    swiss = tmp_path / "swiss.yaml"
    swiss.write_text("lang: de-CH\nreactions: []\n", encoding="utf-8")
    assert [t.label for t in ReactionSet.load(["like"], swiss).types] == ["Gefällt mir"]
    # Only custom types: only the file's language is served.
    only_custom = ReactionSet.load(["boo"])
    assert only_custom.languages == {"en"}
    assert only_custom.language_for("de") == "en"


def test_canonical_language_tags() -> None:
    assert canonical_lang("de") == "de"
    assert canonical_lang("DE_at") == "de-AT"
    assert canonical_lang("zh-hant-tw") == "zh-Hant-TW"
    assert canonical_lang("es-419") == "es-419"
    for bad in ("", "d", "deutsch", "de-", "de--at", "de at", "de\n", "1a", "de-AT-" + "x" * 9):
        assert canonical_lang(bad) is None, bad


BAD_FILES = {
    "not-a-list.yaml": "reactions: like\n",
    "bad-entry.json": '{"reactions": [{"id": "Like!", "label": "x", "emoji": "x"}]}',
    "broken.yaml": "reactions: [\n",
    "missing.yaml": None,
    "bad-lang.yaml": "lang: english\nreactions: []\n",
    "bad-label-tag.json": '{"reactions": [{"id": "like", "label": "x", "emoji": "x", '
    '"labels": {"German": "y"}}]}',
    "long-label.yaml": "reactions:\n  - {id: like, label: x, emoji: x, labels: {de: "
    + "y" * 41
    + "}}\n",
}


@pytest.mark.parametrize("service", ["ingest", "reader", "aggregator"])
@pytest.mark.parametrize("name", sorted(BAD_FILES))
async def test_a_bad_file_refuses_to_start_with_status_2(
    tmp_path: Path, service: str, name: str
) -> None:
    path = tmp_path / name
    text = BAD_FILES[name]
    if text is not None:
        path.write_text(text, encoding="utf-8")
    env = {
        **os.environ,
        "REACTIONS_CONFIG_FILE": str(path),
        # Nothing listens there: a service that got past its settings would fail differently.
        "REACTIONS_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}",
        "REACTIONS_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        f"services.{service}",
        env=env,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    text_out = out.decode(errors="replace")
    assert proc.returncode == 2, text_out
    assert "refusing_to_start" in text_out
    assert str(path) in text_out, text_out
