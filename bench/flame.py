"""Sampled stacks (py-spy's `raw` format: `frame;frame;frame COUNT` lines) read back, summed
into the costs a person looks for first, and drawn as a small flame graph SVG.

The SVG is drawn here rather than by py-spy so that frames too narrow to read are left
out: the graphs are committed, and a few tens of kilobytes say as much as py-spy's
megabyte."""

from __future__ import annotations

import html
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

# A frame as py-spy names it: `function (path/to/module.py:line)`.
FRAME = re.compile(r"^(?P<function>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")
# Where a file's library starts in its path, for grouping costs by library.
SITE_PACKAGES: Final = "site-packages/"
WIDTH_PX: Final = 1200
ROW_PX: Final = 16
CHAR_PX: Final = 6.5
# Frames narrower than this share of the samples are not drawn.
MIN_SHARE: Final = 0.004


def read_collapsed(path: Path) -> Counter[tuple[str, ...]]:
    """Stack (root first) -> samples, from a py-spy `--format raw` file."""
    stacks: Counter[tuple[str, ...]] = Counter()
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks[tuple(stack.split(";"))] += int(count)
    return stacks


def library(frame: str) -> str:
    """The package a frame's code belongs to: `fastapi`, `aiokafka`, `services.ingest`, ...;
    the standard library by module (`asyncio`, `json`)."""
    match = FRAME.match(frame)
    path = match["file"] if match else frame
    if SITE_PACKAGES in path:
        path = path.split(SITE_PACKAGES, 1)[1]
        return path.split("/", 1)[0].removesuffix(".py")
    for ours in ("services/", "shared/", "bench/", "deploy/"):
        if path.startswith(ours) or f"/{ours}" in path:
            parts = path[path.index(ours) :].split("/")
            return ".".join(parts[:2]).removesuffix(".py") if len(parts) > 2 else parts[0]
    stdlib = re.search(r"python3\.\d+/(.+)", path)
    if stdlib:
        return stdlib[1].split("/", 1)[0].removesuffix(".py")
    return path.rsplit("/", 1)[-1].removesuffix(".py") or "?"


def short(frame: str) -> str:
    """`function (library)`: a frame's name without the path."""
    match = FRAME.match(frame)
    if not match:
        return frame
    return f"{match['function']} ({library(frame)})"


@dataclass(frozen=True)
class Costs:
    """Where the samples went: by leaf function (self), by function anywhere on the stack
    (inclusive) and by the library of the leaf."""

    total: int
    self_by_function: Counter[str]
    inclusive_by_function: Counter[str]
    self_by_library: Counter[str]

    @classmethod
    def of(cls, stacks: Counter[tuple[str, ...]]) -> Costs:
        """Sum the stacks' samples."""
        by_self: Counter[str] = Counter()
        inclusive: Counter[str] = Counter()
        by_library: Counter[str] = Counter()
        for stack, count in stacks.items():
            if not stack:
                continue
            by_self[short(stack[-1])] += count
            by_library[library(stack[-1])] += count
            for name in {short(frame) for frame in stack}:
                inclusive[name] += count
        return cls(sum(stacks.values()), by_self, inclusive, by_library)

    def share(self, samples: int) -> float:
        """A count of samples as a share of all of them."""
        return samples / self.total if self.total else 0.0


@dataclass
class _Node:
    name: str
    count: int = 0
    children: dict[str, _Node] = field(default_factory=dict)


def _tree(stacks: Counter[tuple[str, ...]]) -> _Node:
    root = _Node("all")
    for stack, count in stacks.items():
        root.count += count
        node = root
        for frame in stack:
            node = node.children.setdefault(frame, _Node(frame))
            node.count += count
    return root


def _colour(name: str) -> str:
    # Warm for our code, cool for libraries and the standard library: ours stands out.
    lib = library(name)
    hue = sum(lib.encode()) % 40
    if lib.startswith(("services", "shared", "bench")):
        return f"hsl({hue}, 85%, 60%)"
    return f"hsl({180 + hue * 2}, 45%, 70%)"


def svg(stacks: Counter[tuple[str, ...]], title: str) -> str:
    """A flame graph (root at the bottom) of the stacks, frames under MIN_SHARE left out;
    each frame's tooltip gives its samples and share."""
    root = _tree(stacks)
    total = max(root.count, 1)
    rects: list[str] = []
    depth_seen = 0

    def draw(node: _Node, x: float, depth: int) -> None:
        nonlocal depth_seen
        width = WIDTH_PX * node.count / total
        depth_seen = max(depth_seen, depth)
        label = short(node.name)
        tip = html.escape(f"{node.name}: {node.count} samples, {node.count / total:.1%}")
        text = ""
        fits = int(width / CHAR_PX)
        if fits >= 4:
            shown = label if len(label) <= fits else label[: fits - 2] + ".."
            text = f'<text x="{x + 2:.1f}" y="{{y}}">{html.escape(shown)}</text>'
        rects.append(
            f'<g><title>{tip}</title><rect x="{x:.1f}" y="{{y}}r" width="{width:.1f}" '
            f'height="{ROW_PX - 1}" fill="{_colour(node.name)}"/>{text}</g>|{depth}'
        )
        child_x = x
        for child in sorted(node.children.values(), key=lambda c: c.name):
            if child.count / total >= MIN_SHARE:
                draw(child, child_x, depth + 1)
            child_x += WIDTH_PX * child.count / total

    draw(root, 0.0, 0)
    height = (depth_seen + 1) * ROW_PX + 24
    body = []
    for item in rects:
        markup, _, depth = item.rpartition("|")
        top = height - (int(depth) + 1) * ROW_PX
        body.append(markup.replace("{y}r", str(top)).replace("{y}", str(top + ROW_PX - 4)))
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH_PX}" height="{height}" '
        f'font-family="monospace" font-size="11">'
        f'<text x="4" y="14" font-size="13">{html.escape(title)}</text>'
        + "".join(body)
        + "</svg>\n"
    )
