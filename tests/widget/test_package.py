"""widget/ as the npm package a site installs: what `npm pack` would publish, and its
TypeScript declarations checked by `tsc` (pinned in tests/e2e's lockfile, installed by
`make setup`) as a site's code would use them."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any, Final

from widget.build import HERE as WIDGET

TSC: Final = Path(__file__).resolve().parents[1] / "e2e" / "node_modules" / ".bin" / "tsc"
PUBLISHED: Final = {
    "README.md",
    "package.json",
    "reaction-bar.js",
    "reaction-bar.classic.js",
    "reaction-bar.d.ts",
}
CONSUMER: Final = """
import { ReactionBar, define, type ReactionVoteDetail, type TokenProvider } from "reactions-widget";

const bar = document.querySelector("reaction-bar");
if (bar) {
  const typed: ReactionBar = bar;
  typed.addEventListener("reaction-vote", (event) => {
    const detail: ReactionVoteDetail = event.detail;
    const now: string | null = detail.reaction;
    console.log(now, detail.previous, detail.confirmed satisfies boolean);
  });
  bar.addEventListener("reaction-refused", (event) => {
    console.log(event.detail.status satisfies number, event.detail.code satisfies string | null);
  });
  bar.addEventListener("reaction-tally", (event) => {
    console.log(event.detail.counts["like"] satisfies number | undefined, event.detail.seq);
  });
}
const created: ReactionBar = document.createElement("reaction-bar");
created.setAttribute("article", "a1");
const provider: TokenProvider = async () => null;
ReactionBar.setTokenProvider(provider);
const Renamed: typeof ReactionBar = define("news-reactions");
console.log(new Renamed().isConnected);
"""
# A detail field that does not exist: the check must catch it.
MISTAKE: Final = """
import "reactions-widget";
document.querySelector("reaction-bar")?.addEventListener("reaction-vote", (event) => {
  console.log(event.detail.emoji);
});
"""
TSCONFIG: Final = {
    "compilerOptions": {
        "strict": True,
        "noEmit": True,
        "target": "ES2022",
        "module": "ESNext",
        "moduleResolution": "Bundler",
        "lib": ["ES2022", "DOM"],
        "skipLibCheck": False,
    },
    "files": ["consumer.ts"],
}


def npm_pack() -> dict[str, Any]:
    """`npm pack --dry-run --json` of widget/: what publishing it would upload."""
    done = subprocess.run(
        ["npm", "pack", "--dry-run", "--json", "--ignore-scripts"],
        cwd=WIDGET,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "npm_config_update_notifier": "false"},
    )
    assert done.returncode == 0, done.stderr
    (packed,) = json.loads(done.stdout)
    result: dict[str, Any] = packed
    return result


def test_the_package_publishes_the_widget_and_nothing_else() -> None:
    packed = npm_pack()
    assert packed["name"] == "reactions-widget"
    assert {f["path"] for f in packed["files"]} == PUBLISHED
    manifest = json.loads((WIDGET / "package.json").read_text())
    assert manifest["type"] == "module"
    assert manifest["types"] == "./reaction-bar.d.ts"
    assert manifest["exports"]["."] == {
        "types": "./reaction-bar.d.ts",
        "import": "./reaction-bar.js",
        "default": "./reaction-bar.js",
    }
    assert manifest["exports"]["./classic"] == "./reaction-bar.classic.js"
    assert "scripts" not in manifest and "dependencies" not in manifest  # no build step


def typecheck(tmp_path: Path, consumer: str) -> subprocess.CompletedProcess[str]:
    """`tsc --noEmit` on `consumer`, a site's file that imports the package by its name."""
    assert TSC.exists(), f"{TSC} is missing: run `make setup`"
    (tmp_path / "node_modules").mkdir()
    (tmp_path / "node_modules" / "reactions-widget").symlink_to(WIDGET)
    (tmp_path / "consumer.ts").write_text(consumer)
    (tmp_path / "tsconfig.json").write_text(json.dumps(TSCONFIG))
    return subprocess.run(
        [str(TSC), "-p", str(tmp_path)], capture_output=True, text=True, timeout=120
    )


def test_the_declarations_type_a_sites_code(tmp_path: Path) -> None:
    done = typecheck(tmp_path, CONSUMER)
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_wrong_use_is_a_type_error(tmp_path: Path) -> None:
    done = typecheck(tmp_path, MISTAKE)
    assert done.returncode != 0
    assert "Property 'emoji' does not exist on type 'ReactionVoteDetail'" in done.stdout
