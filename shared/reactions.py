"""The configured set of reaction types: ids (stable), labels and emoji (free to change)."""

from __future__ import annotations

from pathlib import Path

import orjson
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

DEFAULT_TYPES = ("like", "dislike", "love", "funny", "angry", "sad", "wow")

_DEFAULT_DISPLAY: dict[str, tuple[str, str]] = {
    "like": ("Like", "👍"),
    "dislike": ("Dislike", "👎"),
    "love": ("Love", "❤️"),
    "funny": ("Funny", "😂"),
    "angry": ("Angry", "😠"),
    "sad": ("Sad", "😢"),
    "wow": ("Wow", "😮"),
}

REACTION_ID_PATTERN = r"^[a-z][a-z0-9_]{0,31}$"


class ReactionType(BaseModel):
    """One button of the bar."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(pattern=REACTION_ID_PATTERN)
    label: str = Field(min_length=1, max_length=40)
    emoji: str = Field(min_length=1, max_length=16)


class ReactionSet:
    """The ordered, validated set of reaction types every service agrees on."""

    def __init__(self, types: list[ReactionType]) -> None:
        if not types:
            raise ValueError("at least one reaction type must be configured")
        ids = [t.id for t in types]
        if len(set(ids)) != len(ids):
            raise ValueError(f"reaction types must be unique, got {ids}")
        self.types = tuple(types)
        self.ids = tuple(ids)
        self._known = frozenset(ids)

    def __contains__(self, reaction_id: object) -> bool:
        return reaction_id in self._known

    @classmethod
    def load(cls, ids: list[str], config_file: Path | None = None) -> ReactionSet:
        """Build the set from the configured ids, with labels and emoji from a YAML/JSON file.

        Without a file, the default types use their built-in labels and any other id is
        shown with its capitalised id and no emoji of its own.
        """
        display: dict[str, tuple[str, str]] = dict(_DEFAULT_DISPLAY)
        if config_file is not None:
            display.update(_read_display_file(config_file))
        types: list[ReactionType] = []
        for reaction_id in ids:
            label, emoji = display.get(reaction_id, (reaction_id.capitalize(), "•"))
            try:
                types.append(ReactionType(id=reaction_id, label=label, emoji=emoji))
            except ValidationError as exc:
                raise ValueError(f"invalid reaction type {reaction_id!r}: {exc}") from exc
        return cls(types)


def _read_display_file(path: Path) -> dict[str, tuple[str, str]]:
    """Read `{"reactions": [{"id", "label", "emoji"}, …]}` from a YAML or JSON file."""
    try:
        raw = path.read_bytes()
        data = orjson.loads(raw) if path.suffix == ".json" else yaml.safe_load(raw)
    except OSError as exc:
        raise ValueError(f"{path}: cannot be read ({exc.strerror or exc})") from exc
    except (orjson.JSONDecodeError, yaml.YAMLError) as exc:
        raise ValueError(
            f"{path}: not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {exc}"
        ) from exc
    if not isinstance(data, dict) or not isinstance(data.get("reactions"), list):
        raise ValueError(f"{path}: expected a mapping with a 'reactions' list")
    out: dict[str, tuple[str, str]] = {}
    for item in data["reactions"]:
        try:
            parsed = ReactionType.model_validate(item)
        except ValidationError as exc:
            raise ValueError(f"{path}: invalid reaction entry {item!r}: {exc}") from exc
        out[parsed.id] = (parsed.label, parsed.emoji)
    return out
