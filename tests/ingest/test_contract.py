"""Every status code of the write contract, each with the error shape, against a real
ingest process and a real broker: `POST /v1/votes` with a reader token, `POST /v1/readers`,
and the replaced paths' 410. No input may produce a 5xx other than 503."""

from __future__ import annotations

import asyncio
import json
import socket
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest

from deploy.local.client import MintedTokens, bearer
from deploy.local.services import Service
from shared.events import DEFAULT_CLIENT_CLOCK_SKEW_MS
from tests.support import assert_error, eventually, read_topic

VOTES = "/v1/votes"
READER = "a.reader-1"


@pytest.fixture
async def http(ingest: Service, tokens: MintedTokens) -> AsyncIterator[httpx.AsyncClient]:
    """A client on ingest whose requests carry READER's token."""
    headers = bearer(tokens.token(READER))
    async with httpx.AsyncClient(base_url=ingest.url, timeout=30, headers=headers) as client:
        yield client


def _vote(article: str = "story-1", reaction: str | None = "like", **extra: Any) -> dict[str, Any]:
    return {"article_id": article, "reaction": reaction, **extra}


async def test_votes_answer_202_with_reader_and_seq_after_kafka_has_the_event(
    http: httpx.AsyncClient, kafka: Any, module_topic: str
) -> None:
    put = await http.post(VOTES, json=_vote("s-202", "boo", client_ts=2**53))
    assert put.status_code == 202, put.text
    assert put.json()["accepted"] is True
    assert put.json()["reader_id"] == READER
    cleared = await http.post(VOTES, json=_vote("s-202", None))
    assert cleared.status_code == 202, cleared.text
    ids = {put.json()["event_id"], cleared.json()["event_id"]}
    assert all(uuid.UUID(i) for i in ids)
    # One article, one partition: the clear comes after the set.
    assert cleared.json()["seq"] > put.json()["seq"] >= 0

    records = await read_topic(kafka.bootstrap, module_topic, at_least=2)
    events = {orjson.loads(r.value)["event_id"]: (r, orjson.loads(r.value)) for r in records}
    assert ids <= set(events)
    record, put_event = events[put.json()["event_id"]]
    assert (put_event["op"], put_event["reaction"]) == ("set", "boo")
    # A client_ts further ahead of the server's clock than the allowed skew is stored as
    # that bound: a clock in the far future cannot freeze the reader's later votes.
    assert put_event["client_ts"] == put_event["ts"] + DEFAULT_CLIENT_CLOCK_SKEW_MS
    assert (put_event["user_id"], put_event["article_id"]) == (READER, "s-202")
    assert record.offset == put.json()["seq"]
    record, clear_event = events[cleared.json()["event_id"]]
    assert clear_event["op"] == "clear" and record.offset == cleared.json()["seq"]


async def test_reaction_types_come_from_configuration(http: httpx.AsyncClient) -> None:
    assert (await http.post(VOTES, json=_vote(reaction="boo"))).status_code == 202
    body = assert_error(await http.post(VOTES, json=_vote(reaction="wow")), 422, "unknown_reaction")
    assert "like, love, boo" in body["error"]["message"]


@pytest.mark.parametrize(
    "raw",
    [b"{", b"", b"{'reaction': 'like'}", b'{"reaction": "like"', b"\xff\xfe{}", b"nul"],
)
async def test_malformed_json_is_400(http: httpx.AsyncClient, raw: bytes) -> None:
    response = await http.post(VOTES, content=raw, headers={"content-type": "application/json"})
    assert_error(response, 400, "malformed_json")


async def test_body_over_1_kib_is_413_before_parsing(http: httpx.AsyncClient) -> None:
    # Not JSON at all: a 400 would mean the body was parsed before its size was checked.
    big = b"x" * 1025
    response = await http.post(VOTES, content=big, headers={"content-type": "application/json"})
    assert_error(response, 413, "body_too_large")

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(40):
            yield b"y" * 100

    streamed = await http.post(
        VOTES, content=chunks(), headers={"content-type": "application/json"}
    )
    assert "content-length" not in streamed.request.headers
    assert streamed.request.headers["transfer-encoding"] == "chunked"
    assert_error(streamed, 413, "body_too_large")

    padded = orjson.dumps(_vote(client_ts=1)) + b" " * 1000
    assert len(padded) > 1024
    assert_error(
        await http.post(VOTES, content=padded, headers={"content-type": "application/json"}),
        413,
    )


async def test_exactly_1_kib_is_accepted(http: httpx.AsyncClient) -> None:
    body = orjson.dumps(_vote())
    body += b" " * (1024 - len(body))
    response = await http.post(VOTES, content=body, headers={"content-type": "application/json"})
    assert response.status_code == 202, response.text


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
async def test_not_json_is_415(http: httpx.AsyncClient, content_type: str | None) -> None:
    headers = {"content-type": content_type} if content_type else {}
    response = await http.post(VOTES, content=orjson.dumps(_vote()), headers=headers)
    assert_error(response, 415, "unsupported_media_type")


async def test_json_with_charset_is_accepted(http: httpx.AsyncClient) -> None:
    response = await http.post(
        VOTES,
        content=orjson.dumps(_vote()),
        headers={"content-type": "Application/JSON; charset=utf-8"},
    )
    assert response.status_code == 202, response.text


@pytest.mark.parametrize(
    "article",
    ["a" * 129, "a!b", "café", "a b", "a/b", "", None, 7, ["a"]],
)
async def test_bad_article_ids_are_422(http: httpx.AsyncClient, article: Any) -> None:
    response = await http.post(VOTES, json={"article_id": article, "reaction": "like"})
    assert_error(response, 422, "invalid_article_id")


async def test_integral_client_ts_written_as_a_float_is_stored_as_an_integer(
    http: httpx.AsyncClient, kafka: Any, module_topic: str
) -> None:
    # JSON (and the OpenAPI "integer" type) does not tell 1725300000000.0 from 1725300000000.
    response = await http.post(
        VOTES,
        content=b'{"article_id": "float-ts", "reaction": "like", "client_ts": 1725300000000.0}',
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 202, response.text
    records = await read_topic(kafka.bootstrap, module_topic, at_least=1)
    [event] = [
        orjson.loads(r.value)
        for r in records
        if orjson.loads(r.value)["event_id"] == response.json()["event_id"]
    ]
    assert event["client_ts"] == 1725300000000
    assert type(event["client_ts"]) is int


async def test_longest_article_id_is_accepted(http: httpx.AsyncClient) -> None:
    response = await http.post(VOTES, json=_vote("a:._~-" + "b" * 122))
    assert response.status_code == 202, response.text


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (_vote(extra=1), "unknown_field"),
        (_vote(user_id="a.someone-else"), "unknown_field"),
        ({"article_id": "a"}, "unknown_reaction"),
        (_vote(reaction="LIKE"), "unknown_reaction"),
        (_vote(reaction=["like"]), "unknown_reaction"),
        (_vote(reaction=""), "unknown_reaction"),
        ({"reaction": "like"}, "invalid_article_id"),
        (_vote(client_ts=0), "invalid_client_ts"),
        (_vote(client_ts=-5), "invalid_client_ts"),
        (_vote(client_ts=2**53 + 1), "invalid_client_ts"),
        (_vote(client_ts=2**64), "invalid_client_ts"),
        (_vote(client_ts=True), "invalid_client_ts"),
        (_vote(client_ts=1.5), "invalid_client_ts"),
        (_vote(client_ts=2.0**53 + 2), "invalid_client_ts"),
        (_vote(client_ts="1725300000000"), "invalid_client_ts"),
        (_vote(client_ts=None), "invalid_client_ts"),
        ([_vote()], "invalid_body"),
        ("like", "invalid_body"),
    ],
)
async def test_invalid_bodies_are_422(http: httpx.AsyncClient, body: Any, code: str) -> None:
    raw = json.dumps(body).encode()  # the stdlib writes integers of any size
    response = await http.post(VOTES, content=raw, headers={"content-type": "application/json"})
    assert_error(response, 422, code)


async def test_thousands_of_query_parameters_are_refused_before_parsing(
    http: httpx.AsyncClient,
) -> None:
    flood = "&".join(["x=1"] * 2600)
    for path in ("/v1/votes", "/v1/readers"):
        response = await http.post(f"{path}?{flood}", json=_vote() if path == "/v1/votes" else {})
        assert_error(response, 400, "too_many_parameters")
    # Sixteen reach the vote, which takes none and ignores them.
    assert (await http.post("/v1/votes?" + "&".join(["x=1"] * 16), json=_vote())).status_code == 202


@pytest.mark.parametrize("method", ["GET", "PUT", "PATCH", "DELETE"])
async def test_other_methods_are_405_with_the_error_shape(
    http: httpx.AsyncClient, method: str
) -> None:
    response = await http.request(method, VOTES, json=_vote())
    assert_error(response, 405, "method_not_allowed")
    assert response.headers["allow"] == "POST"


@pytest.mark.parametrize("method", ["PUT", "DELETE"])
async def test_the_replaced_paths_answer_410_and_publish_nothing(
    http: httpx.AsyncClient, method: str, kafka: Any, module_topic: str
) -> None:
    response = await http.request(
        method, "/v1/articles/gone-1/reactions/u1", json={"reaction": "like"}
    )
    body = assert_error(response, 410, "endpoint_replaced")
    assert "POST /v1/votes" in body["error"]["message"]
    assert "POST /v1/readers" in body["error"]["message"]
    other = await http.get("/v1/articles/gone-1/reactions/u1")
    assert_error(other, 405, "method_not_allowed")
    assert {m.strip() for m in other.headers["allow"].split(",")} == {"PUT", "DELETE"}
    records = await read_topic(kafka.bootstrap, module_topic)
    assert not [r for r in records if r.key and r.key.startswith(b"gone-1\x1f")]


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/%ff%fe",
        "/v1/votes/",
        "/v1/votes/x",
        "/v1/articles//reactions/u",
        "/v1/articles/a%2Fb/reactions/u",
        "/" + "x" * 8000,
        "/v1/articles/\u00e9/reactions/\u00fc",
    ],
)
async def test_weird_paths_get_an_error_shape_not_a_500(http: httpx.AsyncClient, path: str) -> None:
    response = await http.post(path, json=_vote())
    assert 400 <= response.status_code < 500
    assert_error(response, response.status_code)


def test_huge_headers_and_raw_garbage_never_get_a_500(
    ingest: Service, tokens: MintedTokens
) -> None:
    auth = f"Authorization: Bearer {tokens.token(READER)}\r\n".encode()
    vote = orjson.dumps(_vote())
    requests = [
        b"POST /v1/votes HTTP/1.1\r\nHost: x\r\nX-Big: "
        + b"h" * 100_000
        + b"\r\n"
        + auth
        + b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(vote)
        + vote,
        b"POST /v1/votes HTTP/1.1\r\nHost: x\r\n"
        + auth
        + b"Content-Type: application/json\r\nContent-Length: 19\r\n\r\n\xff\xfe\xfd"
        + b"a" * 16,
        b"POST /v1/votes HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xff\xfe\r\n"
        b"Content-Length: 0\r\n\r\n",
        b"PUT /v1/articles/\xff/reactions/u HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
        b"GARBAGE\r\n\r\n",
    ]
    for raw in requests:
        with socket.create_connection(("127.0.0.1", ingest.port), timeout=30) as sock:
            sock.sendall(raw)
            sock.shutdown(socket.SHUT_WR)
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        # The server may answer or just close a connection it cannot parse; either way it
        # answers no 5xx and goes on serving.
        if answer:
            status = int(answer.split(b" ", 2)[1])
            assert 400 <= status < 500 or status == 202, answer[:200]
        assert httpx.get(f"{ingest.url}/healthz", timeout=30).status_code == 200, raw[:60]


async def test_a_client_leaving_mid_body_is_no_server_error(
    ingest: Service, tokens: MintedTokens
) -> None:
    async with httpx.AsyncClient(base_url=ingest.url, timeout=30) as http:

        async def metrics() -> str:
            return (await http.get("/metrics")).text

        before = _vote_400s(await metrics())
        _reader, writer = await asyncio.open_connection("127.0.0.1", ingest.port)
        writer.write(
            b"POST /v1/votes HTTP/1.1\r\nHost: x\r\n"
            + f"Authorization: Bearer {tokens.token(READER)}\r\n".encode()
            + b'Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"reac'
        )
        await writer.drain()
        writer.close()
        await writer.wait_closed()
        text = await eventually(
            metrics, lambda t: _vote_400s(t) > before, what="this request's 400 to be counted"
        )
    assert _vote_400s(text) == before + 1

    # Runs last in this module: nothing any test above sent may have produced a 5xx.
    statuses = {
        line.split('status="', 1)[1].split('"', 1)[0]
        for line in text.splitlines()
        if line.startswith("reactions_http_requests_total{")
    }
    assert statuses and not {s for s in statuses if s.startswith("5")}
    assert "unhandled_error" not in ingest.process.log_path.read_text()


def _vote_400s(metrics: str) -> float:
    """POSTs on the votes route answered 400, as counted in /metrics."""
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("reactions_http_requests_total{")
        and f'route="{VOTES}"' in line
        and 'method="POST"' in line
        and 'status="400"' in line
    )
