"""The configured set of reaction types: ids (stable), labels by language and emoji (free to
change), and the language tags the labels are given in."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Final

import orjson
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

DEFAULT_TYPES = ("like", "dislike", "love", "funny", "angry", "sad", "wow")
DEFAULT_LANG: Final = "en"
# The built-in types, labels and translations, in the configuration file's own format.
BUILT_IN_FILE: Final = Path(__file__).with_name("reactions.yaml")

REACTION_ID_PATTERN = r"^[a-z][a-z0-9_]{0,31}$"
# A language tag as BCP 47 shapes it (a 2-3 letter language, then region, script or variant
# subtags), with `_` accepted for `-` as many content systems write their locales.
LANG_PATTERN: Final = r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{1,8}){0,7}$"
_LANG_RE: Final = re.compile(LANG_PATTERN)

Label = Annotated[str, Field(min_length=1, max_length=40)]


def canonical_lang(tag: str) -> str | None:
    """`tag` in its usual casing (`de-AT`, `zh-Hant-TW`), or None when it is no language tag."""
    if _LANG_RE.fullmatch(tag) is None:
        return None
    first, *rest = re.split(r"[-_]", tag)
    parts = [first.lower()]
    for sub in rest:
        if len(sub) == 4 and sub.isalpha():
            parts.append(sub.title())  # a script
        elif (len(sub) == 2 and sub.isalpha()) or (len(sub) == 3 and sub.isdigit()):
            parts.append(sub.upper())  # a region
        else:
            parts.append(sub.lower())
    return "-".join(parts)


def _fallbacks(tag: str) -> Iterator[str]:
    # RFC 4647 lookup: drop the last subtag (and a singleton left before it) until one fits.
    parts = tag.split("-")
    while parts:
        yield "-".join(parts)
        parts.pop()
        if len(parts) > 1 and len(parts[-1]) == 1:
            parts.pop()


def _closest(by_lang: dict[str, str], lang: str) -> str | None:
    return next((by_lang[tag] for tag in _fallbacks(lang) if tag in by_lang), None)


def _canonical_tags(labels: dict[str, str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for tag, text in labels.items():
        canonical = canonical_lang(tag)
        if canonical is None:
            raise ValueError(f"{tag!r} is not a language tag (such as de, pt-BR)")
        out[canonical] = text
    return out


class ReactionType(BaseModel):
    """One button of the bar: its label in the set's language, and its translations."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(pattern=REACTION_ID_PATTERN)
    label: Label
    emoji: str = Field(min_length=1, max_length=16)
    labels: dict[str, Label] = Field(default_factory=dict)

    @field_validator("labels")
    @classmethod
    def _tags_are_canonical(cls, value: dict[str, str]) -> dict[str, str]:
        return _canonical_tags(value)

    def label_in(self, lang: str) -> str:
        """The label in `lang` or the closest language it has (de-CH, then de), else in the
        set's language."""
        return _closest(self.labels, lang) or self.label


class DisplayFile(BaseModel):
    """A configuration file: the language of its labels, the bar's name and the types."""

    # Keys this format does not know are left alone, as before languages were added.
    model_config = ConfigDict(extra="ignore")

    lang: str = DEFAULT_LANG
    group_label: Label | None = None
    group_labels: dict[str, Label] = Field(default_factory=dict)
    reactions: list[ReactionType]

    @field_validator("lang")
    @classmethod
    def _lang_is_a_tag(cls, value: str) -> str:
        canonical = canonical_lang(value)
        if canonical is None:
            raise ValueError(f"{value!r} is not a language tag (such as en, de, pt-BR)")
        return canonical

    @field_validator("group_labels")
    @classmethod
    def _tags_are_canonical(cls, value: dict[str, str]) -> dict[str, str]:
        return _canonical_tags(value)

    def named(self) -> dict[str, str]:
        """The bar's accessible name by language."""
        own = {self.lang: self.group_label} if self.group_label else {}
        return {**self.group_labels, **own}


class ReactionSet:
    """The ordered, validated set of reaction types every service agrees on."""

    def __init__(
        self,
        types: list[ReactionType],
        lang: str = DEFAULT_LANG,
        group_labels: dict[str, str] | None = None,
    ) -> None:
        if not types:
            raise ValueError("at least one reaction type must be configured")
        ids = [t.id for t in types]
        if len(set(ids)) != len(ids):
            raise ValueError(f"reaction types must be unique, got {ids}")
        self.types = tuple(types)
        self.ids = tuple(ids)
        self._known = frozenset(ids)
        self.lang = lang
        # A language is served when a configured type has a label in it.
        self.languages = frozenset({lang, *(tag for t in types for tag in t.labels)})
        self._group_labels = dict(group_labels or {})

    def __contains__(self, reaction_id: object) -> bool:
        return reaction_id in self._known

    def language_for(self, tag: str) -> str:
        """The served language closest to the canonical `tag` (`de-AT` → `de`), else the
        set's own."""
        return next((t for t in _fallbacks(tag) if t in self.languages), self.lang)

    def group_label(self, lang: str) -> str:
        """The bar's accessible name in `lang` or the closest language (else the set's)."""
        return (
            _closest(self._group_labels, lang)
            or _closest(self._group_labels, self.lang)
            or "Reactions"
        )

    @classmethod
    def load(cls, ids: list[str], config_file: Path | None = None) -> ReactionSet:
        """Build the set from the configured ids, with labels and emoji from a YAML/JSON file.

        The built-in types keep their labels and translations unless the file lists them;
        any other id not in the file is shown with its capitalised id and no emoji of its own.
        """
        built_in = read_display_file(BUILT_IN_FILE)
        own = read_display_file(config_file) if config_file is not None else built_in
        lang = own.lang
        # Every label keyed by its language, so the set's label is its `lang` one.
        entries = {t.id: (built_in.lang, t) for t in built_in.reactions}
        entries.update({t.id: (own.lang, t) for t in own.reactions})
        types: list[ReactionType] = []
        for reaction_id in ids:
            if reaction_id in entries:
                source, entry = entries[reaction_id]
                labels = {source: entry.label, **entry.labels}
                label = _closest(labels, lang) or entry.label
                types.append(entry.model_copy(update={"label": label, "labels": labels}))
                continue
            try:
                types.append(
                    ReactionType(id=reaction_id, label=reaction_id.capitalize(), emoji="•")
                )
            except ValidationError as exc:
                raise ValueError(f"invalid reaction type {reaction_id!r}: {exc}") from exc
        return cls(types, lang, {**built_in.named(), **own.named()})


def read_display_file(path: Path) -> DisplayFile:
    """Read `{"lang", "group_label", "group_labels", "reactions": [{"id", "label", "emoji",
    "labels"}, …]}` from a YAML or JSON file."""
    try:
        raw = path.read_bytes()
        data: Any = orjson.loads(raw) if path.suffix == ".json" else yaml.safe_load(raw)
    except OSError as exc:
        raise ValueError(f"{path}: cannot be read ({exc.strerror or exc})") from exc
    except (orjson.JSONDecodeError, yaml.YAMLError) as exc:
        raise ValueError(
            f"{path}: not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {exc}"
        ) from exc
    if not isinstance(data, dict) or not isinstance(data.get("reactions"), list):
        raise ValueError(f"{path}: expected a mapping with a 'reactions' list")
    for item in data["reactions"]:
        try:
            ReactionType.model_validate(item)
        except ValidationError as exc:
            raise ValueError(f"{path}: invalid reaction entry {item!r}: {exc}") from exc
    try:
        return DisplayFile.model_validate(data)
    except ValidationError as exc:
        raise ValueError(f"{path}: {exc}") from exc
