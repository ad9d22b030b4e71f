"""GET /v1/config?lang=: the labels in the closest configured language, one cacheable URL per
language, against a real reader process."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from shared.reactions import DEFAULT_TYPES
from tests.support import ServiceFactory, assert_error


async def test_config_in_each_language(http: httpx.AsyncClient) -> None:
    default = await http.get("/v1/config")
    assert default.status_code == 200
    body = default.json()
    assert (body["lang"], body["dir"], body["group_label"]) == ("en", "ltr", "Reactions")
    assert [r["id"] for r in body["reactions"]] == list(DEFAULT_TYPES)
    assert body["reactions"][0] == {"id": "like", "label": "Like", "emoji": "👍"}

    german = (await http.get("/v1/config", params={"lang": "de"})).json()
    assert (german["lang"], german["group_label"]) == ("de", "Reaktionen")
    assert [r["label"] for r in german["reactions"]][:3] == [
        "Gefällt mir",
        "Gefällt mir nicht",
        "Liebe",
    ]
    assert [r["id"] for r in german["reactions"]] == list(DEFAULT_TYPES)
    # Normalised to the closest configured language: region, case and `_` do not matter.
    for asked in ("de-AT", "DE", "de_ch", "de-Latn-AT"):
        assert (await http.get("/v1/config", params={"lang": asked})).json() == german, asked
    arabic = (await http.get("/v1/config", params={"lang": "ar-EG"})).json()
    assert (arabic["lang"], arabic["dir"], arabic["reactions"][0]["label"]) == (
        "ar",
        "rtl",
        "أعجبني",
    )
    for lang, like in (("fr", "J’aime"), ("es", "Me gusta"), ("it", "Mi piace")):
        served = (await http.get("/v1/config", params={"lang": lang})).json()
        assert (served["lang"], served["reactions"][0]["label"]) == (lang, like)
    # A language nobody configured gets the default, saying so.
    assert (await http.get("/v1/config", params={"lang": "ja"})).json() == body


async def test_each_language_is_one_cacheable_url(http: httpx.AsyncClient) -> None:
    english = await http.get("/v1/config")
    german = await http.get("/v1/config?lang=de")
    for response in (english, german):
        assert response.headers["cache-control"] == "public, max-age=60"
    assert german.headers["etag"] != english.headers["etag"]
    again = await http.get("/v1/config?lang=de", headers={"If-None-Match": german.headers["etag"]})
    assert again.status_code == 304
    other = await http.get("/v1/config?lang=fr", headers={"If-None-Match": german.headers["etag"]})
    assert other.status_code == 200


@pytest.mark.parametrize("lang", ["", "d", "deutsch", "de--AT", "de AT", "de\n", "12", "de-"])
async def test_a_bad_lang_is_refused_in_the_error_shape(http: httpx.AsyncClient, lang: str) -> None:
    assert_error(await http.get("/v1/config", params={"lang": lang}), 422, "invalid_lang")


async def test_the_file_s_languages_are_served(
    start_service: ServiceFactory, tmp_path: Path
) -> None:
    path = tmp_path / "display.yaml"
    path.write_text(
        "lang: nl\n"
        "group_label: Reacties\n"
        "reactions:\n"
        "  - {id: like, label: Leuk, emoji: '👍', labels: {en: Like, pt-BR: Curti}}\n"
        "  - {id: boo, label: Boe, emoji: '🙈'}\n",
        encoding="utf-8",
    )
    reader = start_service(
        "reader", env={"REACTIONS_CONFIG_FILE": str(path), "REACTIONS_TYPES": "like,boo"}
    )
    async with httpx.AsyncClient(base_url=reader.url, timeout=10) as http:
        default = (await http.get("/v1/config")).json()
        brazil = (await http.get("/v1/config?lang=pt-br")).json()
        portugal = (await http.get("/v1/config?lang=pt-PT")).json()
    assert default == {
        "lang": "nl",
        "dir": "ltr",
        "group_label": "Reacties",
        "reactions": [
            {"id": "like", "label": "Leuk", "emoji": "👍"},
            {"id": "boo", "label": "Boe", "emoji": "🙈"},
        ],
    }
    assert brazil["lang"] == "pt-BR"
    assert [r["label"] for r in brazil["reactions"]] == ["Curti", "Boe"]
    assert portugal == default  # pt-BR is no fallback for pt-PT
