"""Writes the widget's ES module and classic script from its one source, `src/` (run by
`make widget`; a test fails when the files written here are stale).

Both are the source with `src/bar.css` (the stylesheet the reader's server-rendered bar
uses too) in place of `BAR_CSS`, minified by terser (the version `package-lock.json` pins,
installed by `make setup`: the same source always makes the same files). The classic
script is the module's code in a function of its own, without `export`, reading its own URL
from `document.currentScript` instead of `import.meta.url`.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Final

HERE: Final = Path(__file__).resolve().parent
SOURCE: Final = HERE / "src" / "reaction-bar.js"
STYLESHEET: Final = HERE / "src" / "bar.css"
MODULE: Final = HERE / "reaction-bar.js"
CLASSIC: Final = HERE / "reaction-bar.classic.js"
HEADER: Final = "// Reactions widget, {form}: generated from src/reaction-bar.js by build.py.\n"
TERSER: Final = HERE / "node_modules" / "terser" / "bin" / "terser"


def stylesheet() -> str:
    """The bar's stylesheet on one line, as the widget and the server-rendered bar use it."""
    return STYLESHEET.read_text(encoding="utf-8").replace("\n", "")


# A comment after a statement (`code; // why`): the source has no `; //` in a string.
TRAILING_COMMENT: Final = re.compile(r";\s+//.*$")


def compacted(source: str) -> str:
    """`source` without comments (whole lines, and after a statement's `;`), blank lines
    and indentation."""
    lines = (TRAILING_COMMENT.sub(";", line.strip()) for line in source.splitlines())
    return "".join(f"{line}\n" for line in lines if line and not line.startswith("//"))


def code(source: str, css: str) -> str:
    """The code both forms share: the source compacted, with the stylesheet in place."""
    compact = compacted(source)
    if compact.count("BAR_CSS") != 1 or compact.count("import.meta.url") != 1:
        raise ValueError(f"{SOURCE.name} must use BAR_CSS and import.meta.url once each")
    return compact.replace("BAR_CSS", json.dumps(css, ensure_ascii=False))


def minified(script: str, *, module: bool) -> str:
    """`script` through terser: compressed, local names mangled, exports kept."""
    if not TERSER.exists():
        raise SystemExit(f"{TERSER} is missing: run `make setup` (npm ci --prefix widget)")
    flags = ["--module"] if module else []
    result = subprocess.run(
        ["node", str(TERSER), *flags, "--compress", "--mangle"],
        input=script,
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.strip() + "\n"


def module(source: str, css: str) -> str:
    """The ES module: exports `ReactionBar` and `define`."""
    return HEADER.format(form="ES module") + minified(code(source, css), module=True)


def classic(source: str, css: str) -> str:
    """The classic script: the module's code in a function, registering the element."""
    shared = code(source, css)
    shared = shared.replace(
        "import.meta.url", "document.currentScript && document.currentScript.src"
    )
    shared = re.sub(r"^export ", "", shared, flags=re.MULTILINE)
    wrapped = f'(() => {{\n"use strict";\n{shared}}})();\n'
    return HEADER.format(form="classic script") + minified(wrapped, module=False)


def generated() -> dict[Path, str]:
    """Each file this writes, with its content from the source as it is now."""
    source, css = SOURCE.read_text(encoding="utf-8"), stylesheet()
    return {MODULE: module(source, css), CLASSIC: classic(source, css)}


def main() -> int:
    """Write the files that differ from what the source makes; print their names."""
    for path, text in generated().items():
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path.relative_to(HERE.parent)}")  # noqa: T201
    return 0


if __name__ == "__main__":
    sys.exit(main())
