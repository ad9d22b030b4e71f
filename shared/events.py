"""The reaction event: its identifiers, its JSON codec, its Kafka key and partition.

Every producer and consumer of the topic goes through this module, so the wire format
lives in one place. Decoding is hand-written rather than a pydantic model because the
aggregator decodes ~100k events a second and a model costs several times more.
"""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass
from typing import Final, Literal

import orjson

from shared.reactions import REACTION_ID_PATTERN

SCHEMA_VERSION: Final = 1
KEY_SEPARATOR: Final = "\x1f"
MAX_CLIENT_TS: Final = 2**53
# How far ahead of the server's clock a client_ts may be (REACTIONS_CLIENT_CLOCK_SKEW_MS):
# one further ahead is taken as that bound, or a reader's clock could freeze their vote.
DEFAULT_CLIENT_CLOCK_SKEW_MS: Final = 300_000

ARTICLE_ID_PATTERN: Final = r"^[A-Za-z0-9._:~-]{1,128}$"
USER_ID_PATTERN: Final = r"^[A-Za-z0-9._~-]{1,64}$"
# The sentence both HTTP services answer with when an article id breaks its pattern.
ARTICLE_ID_MESSAGE: Final = "article_id must be 1-128 characters of A-Z a-z 0-9 . _ : ~ -."
_ARTICLE_ID_RE: Final = re.compile(ARTICLE_ID_PATTERN)
_USER_ID_RE: Final = re.compile(USER_ID_PATTERN)
_ARTICLE_ID_MATCH: Final = _ARTICLE_ID_RE.fullmatch
_USER_ID_MATCH: Final = _USER_ID_RE.fullmatch
_REACTION_ID_MATCH: Final = re.compile(REACTION_ID_PATTERN).fullmatch
# Well-formed reaction ids seen so far: a set lookup per event instead of a regex. Bounded,
# because a producer other than ingest could send any number of them.
_SEEN_REACTIONS: Final[set[str]] = set()
_MAX_SEEN_REACTIONS: Final = 1024

Op = Literal["set", "clear"]


def valid_article_id(value: str) -> bool:
    """True when `value` is 1–128 chars of [A-Za-z0-9._:~-]."""
    return _ARTICLE_ID_RE.fullmatch(value) is not None


def valid_user_id(value: str) -> bool:
    """True when `value` is 1–64 chars of [A-Za-z0-9._~-]."""
    return _USER_ID_RE.fullmatch(value) is not None


def valid_client_ts(value: object) -> bool:
    """True for a positive integer (not a bool) no larger than 2**53."""
    return type(value) is int and 0 < value <= MAX_CLIENT_TS


def bounded_client_ts(client_ts: int | None, ts: int, skew_ms: int) -> int | None:
    """`client_ts`, or `ts + skew_ms` when it is further ahead of the server's clock `ts`.

    Last writer wins by client_ts: a clock far in the future would make every later vote of
    the reader stale. Bounded (rather than refused), a fast clock still votes.
    """
    if client_ts is not None and client_ts > ts + skew_ms:
        return ts + skew_ms
    return client_ts


class InvalidEvent(ValueError):
    """A record on the topic that is not a valid event; `reason` is a short code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class ReactionEvent:
    """One reader setting or clearing their reaction on one article."""

    event_id: str
    op: Op
    article_id: str
    user_id: str
    reaction: str | None
    ts: int
    client_ts: int | None = None

    @classmethod
    def new(
        cls,
        op: Op,
        article_id: str,
        user_id: str,
        reaction: str | None = None,
        client_ts: int | None = None,
        *,
        clock_skew_ms: int | None = None,
    ) -> ReactionEvent:
        """A fresh event stamped with a new id and the server's clock; with `clock_skew_ms`,
        a client_ts further ahead of that clock is taken as the bound."""
        ts = time.time_ns() // 1_000_000
        if clock_skew_ms is not None:
            client_ts = bounded_client_ts(client_ts, ts, clock_skew_ms)
        return cls(
            event_id=str(uuid.uuid4()),
            op=op,
            article_id=article_id,
            user_id=user_id,
            reaction=reaction if op == "set" else None,
            ts=ts,
            client_ts=client_ts,
        )

    def key(self) -> bytes:
        """The record key: compaction keeps the latest record per (article, reader)."""
        return record_key(self.article_id, self.user_id)

    def encode(self) -> bytes:
        """The record value as UTF-8 JSON, per the contract."""
        body: dict[str, object] = {
            "v": SCHEMA_VERSION,
            "event_id": self.event_id,
            "op": self.op,
            "article_id": self.article_id,
            "user_id": self.user_id,
        }
        if self.op == "set":
            body["reaction"] = self.reaction
        body["ts"] = self.ts
        if self.client_ts is not None:
            body["client_ts"] = self.client_ts
        return orjson.dumps(body)


def record_key(article_id: str, user_id: str) -> bytes:
    """`article_id` + unit separator + `user_id`, UTF-8."""
    return f"{article_id}{KEY_SEPARATOR}{user_id}".encode()


def decode_event(raw: bytes | None) -> ReactionEvent:
    """Parse and validate one record value, raising InvalidEvent with a reason code."""
    return ReactionEvent(*decode_fields(raw))


EventFields = tuple[str, Op, str, str, str | None, int, int | None]


def decode_fields(raw: bytes | None) -> EventFields:
    """`decode_event` without building the event: (event_id, op, article_id, user_id,
    reaction, ts, client_ts), for the aggregator's hot path.

    A reaction is any well-formed id, configured or not: ingest decides which types it
    accepts, and an aggregator configured with an older list must still count what ingest
    accepted (each reader shows the types it is configured with).
    """
    get = _json_object(raw).get
    if get("v") != SCHEMA_VERSION:
        raise InvalidEvent("unknown_version", f"v={get('v')!r}")
    event_id = get("event_id")
    article_id = get("article_id")
    user_id = get("user_id")
    ts = get("ts")
    client_ts = get("client_ts")
    # orjson yields exact str and int types, so `type(...) is` checks suffice and are cheaper.
    if type(event_id) is not str or not 0 < len(event_id) <= 64:
        raise InvalidEvent("bad_event_id", f"event_id={event_id!r}")
    if type(article_id) is not str or _ARTICLE_ID_MATCH(article_id) is None:
        raise InvalidEvent("bad_article_id", f"article_id={article_id!r}")
    if type(user_id) is not str or _USER_ID_MATCH(user_id) is None:
        raise InvalidEvent("bad_user_id", f"user_id={user_id!r}")
    if type(ts) is not int or ts < 0:
        raise InvalidEvent("bad_ts", f"ts={ts!r}")
    if client_ts is not None and not (type(client_ts) is int and 0 < client_ts <= MAX_CLIENT_TS):
        raise InvalidEvent("bad_client_ts", f"client_ts={client_ts!r}")
    op = get("op")
    if op == "set":
        reaction = get("reaction")
        if type(reaction) is not str or (
            reaction not in _SEEN_REACTIONS and not _new_reaction_id(reaction)
        ):
            raise InvalidEvent("bad_reaction", f"reaction={reaction!r}")
        return event_id, "set", article_id, user_id, reaction, ts, client_ts
    if op == "clear":
        return event_id, "clear", article_id, user_id, None, ts, client_ts
    raise InvalidEvent("bad_op", f"op={op!r}")


def _new_reaction_id(reaction: str) -> bool:
    """True when `reaction` is a well-formed reaction id; remembered for the next event."""
    if _REACTION_ID_MATCH(reaction) is None:
        return False
    if len(_SEEN_REACTIONS) >= _MAX_SEEN_REACTIONS:
        _SEEN_REACTIONS.clear()
    _SEEN_REACTIONS.add(reaction)
    return True


def _json_object(raw: bytes | None) -> dict[str, object]:
    """The record value as a JSON object, or InvalidEvent (a tombstone, bad JSON)."""
    if raw is None:
        raise InvalidEvent("tombstone", "record has no value")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidEvent("bad_json", str(exc)) from None
    if type(body) is not dict:
        raise InvalidEvent("bad_json", "value is not a JSON object")
    return body


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 hash (as in the Java client's `Utils.murmur2`), as a signed int32."""
    length = len(data)
    seed = 0x9747B28C
    m = 0x5BD1E995
    r = 24
    h = (seed ^ length) & 0xFFFFFFFF
    length4 = length // 4
    for i in range(length4):
        i4 = i * 4
        k = data[i4] | (data[i4 + 1] << 8) | (data[i4 + 2] << 16) | (data[i4 + 3] << 24)
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> r
        k = (k * m) & 0xFFFFFFFF
        h = (h * m) & 0xFFFFFFFF
        h ^= k
    extra = length % 4
    tail = length & ~3
    if extra == 3:
        h ^= data[tail + 2] << 16
    if extra >= 2:
        h ^= data[tail + 1] << 8
    if extra >= 1:
        h ^= data[tail]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h - 0x100000000 if h & 0x80000000 else h


def partition_for(article_id: str, partitions: int) -> int:
    """The partition of every event of `article_id`: `toPositive(murmur2(id)) % partitions`."""
    return (murmur2(article_id.encode()) & 0x7FFFFFFF) % partitions
