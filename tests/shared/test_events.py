"""The event codec, the record key and the partitioner."""

from __future__ import annotations

import orjson
import pytest
from aiokafka.partitioner import murmur2 as aiokafka_murmur2
from hypothesis import given
from hypothesis import strategies as st

from shared.events import (
    InvalidEvent,
    ReactionEvent,
    decode_event,
    murmur2,
    partition_for,
    record_key,
    valid_article_id,
    valid_user_id,
)


def test_roundtrip_of_set_and_clear() -> None:
    for event in (
        ReactionEvent.new("set", "a1", "u1", "love", client_ts=1725300000000),
        ReactionEvent.new("clear", "a:b~c", "u.1"),
    ):
        assert decode_event(event.encode()) == event


def test_encoding_follows_the_contract() -> None:
    event = ReactionEvent("e1", "set", "a1", "u1", "love", 5, 7)
    assert orjson.loads(event.encode()) == {
        "v": 1,
        "event_id": "e1",
        "op": "set",
        "article_id": "a1",
        "user_id": "u1",
        "reaction": "love",
        "ts": 5,
        "client_ts": 7,
    }
    clear = ReactionEvent("e2", "clear", "a1", "u1", None, 5)
    assert orjson.loads(clear.encode()) == {
        "v": 1,
        "event_id": "e2",
        "op": "clear",
        "article_id": "a1",
        "user_id": "u1",
        "ts": 5,
    }
    assert event.key() == b"a1\x1fu1" == record_key("a1", "u1")


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (None, "tombstone"),
        (b"{not json", "bad_json"),
        (b"[1]", "bad_json"),
        (b'{"v": 2}', "unknown_version"),
        (
            b'{"v":1,"event_id":"e","op":"set","article_id":"a b","user_id":"u","ts":1}',
            "bad_article_id",
        ),
        (b'{"v":1,"event_id":"e","op":"set","article_id":"a","user_id":"","ts":1}', "bad_user_id"),
        (
            b'{"v":1,"event_id":"e","op":"set","article_id":"a","user_id":"u","ts":1,'
            b'"reaction":"Meh!"}',
            "bad_reaction",
        ),
        (
            b'{"v":1,"event_id":"e","op":"set","article_id":"a","user_id":"u","ts":1,'
            b'"reaction":["like"]}',
            "bad_reaction",
        ),
        (
            b'{"v":1,"event_id":"e","op":"set","article_id":"a","user_id":"u","ts":1,'
            b'"reaction":"' + b"x" * 33 + b'"}',
            "bad_reaction",
        ),
        (b'{"v":1,"event_id":"e","op":"flip","article_id":"a","user_id":"u","ts":1}', "bad_op"),
        (b'{"v":1,"event_id":"e","op":"clear","article_id":"a","user_id":"u"}', "bad_ts"),
        (
            b'{"v":1,"event_id":"e","op":"clear","article_id":"a","user_id":"u","ts":1,'
            b'"client_ts":true}',
            "bad_client_ts",
        ),
        (b'{"v":1,"op":"clear","article_id":"a","user_id":"u","ts":1}', "bad_event_id"),
    ],
)
def test_invalid_records_name_their_reason(raw: bytes | None, reason: str) -> None:
    with pytest.raises(InvalidEvent) as info:
        decode_event(raw)
    assert info.value.reason == reason


def test_any_well_formed_reaction_id_decodes_configured_or_not() -> None:
    # The set of types is ingest's to check: an aggregator on an older list counts them all.
    for reaction in ("like", "clap", "x" * 32, "a_1"):
        event = ReactionEvent.new("set", "a1", "u1", reaction)
        assert decode_event(event.encode()).reaction == reaction


def test_identifier_patterns() -> None:
    assert valid_article_id("a" * 128) and not valid_article_id("a" * 129)
    assert valid_article_id("A-z.0_9:~") and not valid_article_id("a/b")
    assert valid_user_id("u" * 64) and not valid_user_id("u" * 65)
    assert not valid_user_id("u:1") and not valid_user_id("")


@given(st.binary(max_size=200))
def test_murmur2_matches_aiokafka(data: bytes) -> None:
    expected = aiokafka_murmur2(data)
    assert murmur2(data) & 0xFFFFFFFF == expected & 0xFFFFFFFF


@given(st.from_regex(r"[A-Za-z0-9._:~-]{1,128}", fullmatch=True), st.integers(1, 64))
def test_partition_is_in_range(article_id: str, partitions: int) -> None:
    assert 0 <= partition_for(article_id, partitions) < partitions
