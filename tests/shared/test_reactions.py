"""REACTIONS_CONFIG_FILE: labels and emoji from YAML or JSON; a bad file refuses to start."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import httpx
import pytest

from deploy.local.process import ROOT, free_port
from shared.reactions import ReactionSet
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


BAD_FILES = {
    "not-a-list.yaml": "reactions: like\n",
    "bad-entry.json": '{"reactions": [{"id": "Like!", "label": "x", "emoji": "x"}]}',
    "broken.yaml": "reactions: [\n",
    "missing.yaml": None,
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
