"""Accessibility audits with axe-core (pinned in tests/e2e/package.json, installed by `make
setup`), loaded into a Playwright page."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

from playwright.sync_api import Page

AXE_JS: Final = Path(__file__).parent / "node_modules" / "axe-core" / "axe.min.js"


def audit(page: Page) -> list[dict[str, Any]]:
    """axe-core's violations on the page as it is now: every rule axe runs by default (WCAG
    2.0-2.2 A and AA, and best practices), inside open shadow roots too."""
    assert AXE_JS.exists(), f"{AXE_JS} is missing: run `make setup`"
    if not page.evaluate("typeof window.axe === 'object'"):
        page.add_script_tag(path=str(AXE_JS))
    violations: list[dict[str, Any]] = page.evaluate(
        "async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
    )
    return violations


def described(violations: list[dict[str, Any]]) -> str:
    """The violations, one line per element, for an assertion's message."""
    return "\n".join(
        f"{v['id']} ({v['impact']}): {v['help']} at {node['target']}: {node['failureSummary']}"
        for v in violations
        for node in v["nodes"]
    )
