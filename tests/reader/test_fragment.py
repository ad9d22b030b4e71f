"""GET /v1/articles/{id}/reactions.html: a bar as server-rendered HTML with the counts, in
the structure README "The bar as HTML" documents, against a real reader and Redis."""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis

from shared.reactions import DEFAULT_TYPES
from shared.tallies import counts_key
from tests.support import ServiceFactory, assert_error

NB = "\u00a0"


@dataclass
class Node:
    tag: str
    attrs: dict[str, str | None]
    children: list[Node] = field(default_factory=list)
    text: str = ""  # its own text, without its children's
    content: list[Node | str] = field(default_factory=list)  # text and children, in order

    def all_text(self) -> str:
        return "".join(c if isinstance(c, str) else c.all_text() for c in self.content)

    def find(self, cls: str) -> list[Node]:
        """Every element below with the class `cls`, in document order."""
        found = [c for c in self.children if cls in (c.attrs.get("class") or "").split()]
        return found + [n for c in self.children for n in c.find(cls)]


class Tree(HTMLParser):
    """The fragment as a tree of elements (the HTML parser keeps a template's contents)."""

    VOID = frozenset({"meta", "link", "br", "img", "input"})

    def __init__(self, markup: str) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#root", {})
        self.open = [self.root]
        self.feed(markup)
        self.close()
        assert self.open == [self.root], "unclosed elements"

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, dict(attrs))
        self.open[-1].children.append(node)
        self.open[-1].content.append(node)
        if tag not in self.VOID:
            self.open.append(node)

    def handle_endtag(self, tag: str) -> None:
        assert self.open[-1].tag == tag, (self.open[-1].tag, tag)
        self.open.pop()

    def handle_data(self, data: str) -> None:
        self.open[-1].text += data
        self.open[-1].content.append(data)


def reactions_of(markup: str) -> list[tuple[str, str, str, str | None]]:
    """(reaction id, label, count shown, data-count) of each reaction in the bar."""
    (bar,) = Tree(markup).root.find("bar")
    shown = []
    for item in bar.find("rx"):
        (label,) = item.find("l")
        (count,) = item.find("n")
        shown.append(
            (
                str(item.attrs["data-reaction"]),
                label.text,
                count.text,
                count.attrs.get("data-count"),
            )
        )
    return shown


async def test_the_bar_as_html(http: httpx.AsyncClient, redis: Redis) -> None:
    await redis.hset(counts_key("f1"), mapping={"like": 1234, "love": 3, "@fence": "2:41"})
    response = await http.get("/v1/articles/f1/reactions.html")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["cache-control"] == "public, max-age=1, stale-while-revalidate=5"
    assert response.headers["content-language"] == "en"
    markup = response.text
    assert "<script" not in markup.lower()

    root = Tree(markup).root
    (template,) = root.children  # one declarative shadow root, nothing else
    assert (template.tag, template.attrs) == ("template", {"shadowrootmode": "open"})
    style, bar, message = template.children
    assert style.tag == "style" and ".rx{" in style.text
    assert bar.attrs == {
        "class": "bar",
        "part": "bar",
        "role": "group",
        "aria-label": "Reactions",
        "lang": "en",
        "dir": "ltr",
        "data-article": "f1",
        "data-seq": "41",
    }
    assert (message.tag, message.attrs["role"], message.all_text()) == ("p", "status", "")
    items = bar.find("rx")
    assert [i.attrs["data-reaction"] for i in items] == list(DEFAULT_TYPES)
    first = items[0]
    assert first.attrs["part"] == "button"
    emoji, label, count = first.children
    assert [c.attrs["part"] for c in first.children] == ["emoji", "label", "count"]
    assert (emoji.attrs["class"], emoji.attrs["aria-hidden"], emoji.text) == ("e", "true", "👍")
    assert (label.attrs["class"], label.text) == ("l", "Like")
    assert (count.attrs["class"], count.attrs["data-count"], count.text) == ("n", "1234", "1.2K")
    # Without CSS (a text browser, reader mode) it reads "👍 Like 1.2K".
    assert first.all_text() == "👍 Like 1.2K"
    assert reactions_of(markup)[2] == ("love", "Love", "3", "3")
    assert reactions_of(markup)[1] == ("dislike", "Dislike", "0", "0")

    unseen = await http.get("/v1/articles/never-seen/reactions.html")
    (bar,) = Tree(unseen.text).root.find("bar")
    assert bar.attrs["data-seq"] == "-1"
    assert {shown for _, _, shown, _ in reactions_of(unseen.text)} == {"0"}


async def test_language_threshold_and_types_are_each_one_url(
    http: httpx.AsyncClient, redis: Redis
) -> None:
    await redis.hset(counts_key("f2"), mapping={"like": 1234, "love": 4, "sad": 5, "wow": 1234567})
    german = await http.get("/v1/articles/f2/reactions.html", params={"lang": "de-AT"})
    assert german.headers["content-language"] == "de"
    (bar,) = Tree(german.text).root.find("bar")
    assert (bar.attrs["lang"], bar.attrs["aria-label"]) == ("de", "Reaktionen")
    shown = {r: (label, count) for r, label, count, _ in reactions_of(german.text)}
    assert shown["like"] == ("Gefällt mir", "1234")
    assert shown["wow"] == ("Wow", f"1,2{NB}Mio.")
    arabic = await http.get("/v1/articles/f2/reactions.html", params={"lang": "ar"})
    (bar,) = Tree(arabic.text).root.find("bar")
    assert (bar.attrs["dir"], reactions_of(arabic.text)[0][1:3]) == (
        "rtl",
        ("أعجبني", f"1.2{NB}ألف"),
    )

    hidden = await http.get("/v1/articles/f2/reactions.html", params={"hide-counts-below": 5})
    (bar,) = Tree(hidden.text).root.find("bar")
    assert bar.attrs["data-hide-counts-below"] == "5"
    counts = {r: (count, data) for r, _, count, data in reactions_of(hidden.text)}
    # A hidden count shows no number, in the text or in an attribute.
    assert counts["love"] == ("", None)
    assert counts["dislike"] == ("", None)
    assert counts["sad"] == ("5", "5")
    assert counts["like"] == ("1.2K", "1234")
    assert 'data-count="4"' not in hidden.text

    subset = await http.get("/v1/articles/f2/reactions.html", params={"types": "wow,like,like,"})
    assert [r for r, *_ in reactions_of(subset.text)] == ["like", "wow"]  # display order

    bodies = {german.text, arabic.text, hidden.text, subset.text}
    assert len(bodies) == 4
    etag = subset.headers["etag"]
    again = await http.get(
        "/v1/articles/f2/reactions.html?types=wow,like,like,", headers={"If-None-Match": etag}
    )
    assert again.status_code == 304
    assert again.headers["cache-control"] == "public, max-age=1, stale-while-revalidate=5"


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("lang=deutsch", "invalid_lang"),
        ("lang=", "invalid_lang"),
        ("hide-counts-below=-1", "invalid_request"),
        ("hide-counts-below=ten", "invalid_request"),
        ("hide-counts-below=1000000001", "invalid_request"),
        ("types=nope", "invalid_types"),
        ("types=like,nope", "invalid_types"),
        ("types=,", "invalid_types"),
    ],
)
async def test_bad_parameters_get_422_in_the_error_shape(
    http: httpx.AsyncClient, query: str, code: str
) -> None:
    assert_error(await http.get(f"/v1/articles/f3/reactions.html?{query}"), 422, code)


async def test_bad_article_and_user_id_are_refused(http: httpx.AsyncClient) -> None:
    assert_error(await http.get("/v1/articles/bad%20id/reactions.html"), 422, "invalid_article_id")
    assert_error(
        await http.get("/v1/articles/f3/reactions.html?user_id=u1"), 400, "user_id_not_supported"
    )


async def test_labels_from_the_configuration_are_escaped(
    start_service: ServiceFactory, tmp_path: Path, redis: Redis
) -> None:
    path = tmp_path / "display.json"
    path.write_text(
        '{"group_label": "<b>\\"Reactions\\"</b>", "reactions": [{"id": "like", '
        '"label": "</span><script>alert(1)</script>", "emoji": "&amp;"}]}',
        encoding="utf-8",
    )
    reader = start_service(
        "reader", env={"REACTIONS_CONFIG_FILE": str(path), "REACTIONS_TYPES": "like"}
    )
    async with httpx.AsyncClient(base_url=reader.url, timeout=10) as http:
        markup = (await http.get("/v1/articles/f4/reactions.html")).text
    assert "<script" not in markup and "<b>" not in markup
    (bar,) = Tree(markup).root.find("bar")
    assert bar.attrs["aria-label"] == '<b>"Reactions"</b>'
    (item,) = bar.find("rx")
    assert item.find("l")[0].text == "</span><script>alert(1)</script>"
    assert item.find("e")[0].text == "&amp;"
