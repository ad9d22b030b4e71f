"""The widget's two forms, made from its one source by widget/build.py (`make widget`): the
committed files are what the source makes now, each within the 8 KB budget."""

from __future__ import annotations

import gzip
import subprocess
from pathlib import Path

import pytest

from widget.build import CLASSIC, MODULE, SOURCE, generated, stylesheet

BUDGET = 8 * 1024


def test_the_committed_module_and_classic_script_are_what_the_source_makes() -> None:
    stale = [p.name for p, text in generated().items() if p.read_text(encoding="utf-8") != text]
    assert not stale, f"{stale} are stale: run `make widget` and commit them"


@pytest.mark.parametrize("path", [MODULE, CLASSIC], ids=lambda p: p.name)
def test_each_form_is_at_most_8_kb_gzipped(path: Path) -> None:
    size = len(gzip.compress(path.read_bytes(), 9))
    print(f"\n{path.name}: {size} bytes gzipped (-9)")
    assert size <= BUDGET, f"{path.name} is {size} bytes gzipped"


def test_the_module_exports_and_the_classic_script_does_not() -> None:
    module, classic = MODULE.read_text(), CLASSIC.read_text()
    assert "export class ReactionBar extends " in module
    assert "export const define=" in module
    assert "import.meta.url" in module
    assert "export " not in classic and "import.meta" not in classic
    assert classic.splitlines()[1].startswith('(()=>{"use strict";')
    # The stylesheet is the one the server-rendered bar carries.
    assert stylesheet() in module.replace('\\"', '"')
    assert "BAR_CSS" not in module and "BAR_CSS" in SOURCE.read_text()


@pytest.mark.parametrize("path", [MODULE, CLASSIC], ids=lambda p: p.name)
def test_each_form_parses_and_imports_without_a_page(path: Path) -> None:
    # A framework that renders on the server imports the module in Node: it must not throw.
    if path == MODULE:
        code = f"import('{path.as_uri()}').then(m => console.log(Object.keys(m).sort().join()))"
        done = subprocess.run(["node", "-e", code], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "ReactionBar,define"
    else:
        done = subprocess.run(["node", "--check", str(path)], capture_output=True, timeout=60)
        assert done.returncode == 0, done.stderr
