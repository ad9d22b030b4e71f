"""Every status code of the write contract, each with the error shape, against a real
ingest process and a real broker. No input may produce a 5xx other than 503."""

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

from deploy.local.services import Service
from tests.support import assert_error, eventually, read_topic

URL = "/v1/articles/{article}/reactions/{user}"
ROUTE = "/v1/articles/{article_id}/reactions/{user_id}"  # the route label in /metrics


def _url(article: str = "story-1", user: str = "reader-1") -> str:
    return URL.format(article=article, user=user)


@pytest.fixture
async def http(ingest: Service) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=ingest.url, timeout=30) as client:
        yield client


async def test_put_and_delete_answer_202_after_kafka_has_the_event(
    http: httpx.AsyncClient, kafka: Any, module_topic: str
) -> None:
    put = await http.put(_url("s-202", "u1"), json={"reaction": "boo", "client_ts": 2**53})
    assert put.status_code == 202, put.text
    assert put.json()["accepted"] is True
    delete = await http.delete(_url("s-202", "u1"))
    assert delete.status_code == 202, delete.text
    ids = {put.json()["event_id"], delete.json()["event_id"]}
    assert all(uuid.UUID(i) for i in ids)

    records = await read_topic(kafka.bootstrap, module_topic, at_least=2)
    events = {orjson.loads(r.value)["event_id"]: orjson.loads(r.value) for r in records}
    assert ids <= set(events)
    put_event = events[put.json()["event_id"]]
    assert (put_event["op"], put_event["reaction"], put_event["client_ts"]) == ("set", "boo", 2**53)
    assert events[delete.json()["event_id"]]["op"] == "clear"


async def test_reaction_types_come_from_configuration(http: httpx.AsyncClient) -> None:
    assert (await http.put(_url(), json={"reaction": "boo"})).status_code == 202
    body = assert_error(await http.put(_url(), json={"reaction": "wow"}), 422, "unknown_reaction")
    assert "like, love, boo" in body["error"]["message"]


@pytest.mark.parametrize(
    "raw",
    [b"{", b"", b"{'reaction': 'like'}", b'{"reaction": "like"', b"\xff\xfe{}", b"nul"],
)
async def test_malformed_json_is_400(http: httpx.AsyncClient, raw: bytes) -> None:
    response = await http.put(_url(), content=raw, headers={"content-type": "application/json"})
    assert_error(response, 400, "malformed_json")


async def test_body_over_1_kib_is_413_before_parsing(http: httpx.AsyncClient) -> None:
    # Not JSON at all: a 400 would mean the body was parsed before its size was checked.
    big = b"x" * 1025
    response = await http.put(_url(), content=big, headers={"content-type": "application/json"})
    assert_error(response, 413, "body_too_large")

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(40):
            yield b"y" * 100

    streamed = await http.put(
        _url(), content=chunks(), headers={"content-type": "application/json"}
    )
    assert "content-length" not in streamed.request.headers
    assert streamed.request.headers["transfer-encoding"] == "chunked"
    assert_error(streamed, 413, "body_too_large")

    padded = orjson.dumps({"reaction": "like", "client_ts": 1}) + b" " * 1000
    assert len(padded) > 1024
    assert_error(
        await http.put(_url(), content=padded, headers={"content-type": "application/json"}),
        413,
    )


async def test_exactly_1_kib_is_accepted(http: httpx.AsyncClient) -> None:
    body = orjson.dumps({"reaction": "like"})
    body += b" " * (1024 - len(body))
    response = await http.put(_url(), content=body, headers={"content-type": "application/json"})
    assert response.status_code == 202, response.text


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
async def test_not_json_is_415(http: httpx.AsyncClient, content_type: str | None) -> None:
    headers = {"content-type": content_type} if content_type else {}
    response = await http.put(_url(), content=b'{"reaction": "like"}', headers=headers)
    assert_error(response, 415, "unsupported_media_type")


async def test_json_with_charset_is_accepted(http: httpx.AsyncClient) -> None:
    response = await http.put(
        _url(),
        content=b'{"reaction": "like"}',
        headers={"content-type": "Application/JSON; charset=utf-8"},
    )
    assert response.status_code == 202, response.text


@pytest.mark.parametrize(
    ("article", "user", "code"),
    [
        ("a" * 129, "u", "invalid_article_id"),
        ("a!b", "u", "invalid_article_id"),
        ("caf%C3%A9", "u", "invalid_article_id"),
        ("a b", "u", "invalid_article_id"),
        ("a", "u" * 65, "invalid_user_id"),
        ("a", "u:1", "invalid_user_id"),  # ':' is allowed in article ids only
        ("a", "%00", "invalid_user_id"),
    ],
)
async def test_bad_ids_are_422(http: httpx.AsyncClient, article: str, user: str, code: str) -> None:
    assert_error(await http.put(_url(article, user), json={"reaction": "like"}), 422, code)
    assert_error(await http.delete(_url(article, user)), 422, code)


async def test_integral_client_ts_written_as_a_float_is_stored_as_an_integer(
    http: httpx.AsyncClient, kafka: Any, module_topic: str
) -> None:
    # JSON (and the OpenAPI "integer" type) does not tell 1725300000000.0 from 1725300000000.
    response = await http.put(
        _url("float-ts", "u"),
        content=b'{"reaction": "like", "client_ts": 1725300000000.0}',
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


async def test_longest_ids_are_accepted(http: httpx.AsyncClient) -> None:
    response = await http.put(
        _url("a:._~-" + "b" * 122, "u._~-" + "v" * 59), json={"reaction": "like"}
    )
    assert response.status_code == 202, response.text


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"reaction": "like", "extra": 1}, "unknown_field"),
        ({"reaction": "like", "user_id": "x"}, "unknown_field"),
        ({}, "unknown_reaction"),
        ({"reaction": None}, "unknown_reaction"),
        ({"reaction": "LIKE"}, "unknown_reaction"),
        ({"reaction": ["like"]}, "unknown_reaction"),
        ({"reaction": "like", "client_ts": 0}, "invalid_client_ts"),
        ({"reaction": "like", "client_ts": -5}, "invalid_client_ts"),
        ({"reaction": "like", "client_ts": 2**53 + 1}, "invalid_client_ts"),
        ({"reaction": "like", "client_ts": 2**64}, "invalid_client_ts"),
        ({"reaction": "like", "client_ts": True}, "invalid_client_ts"),
        ({"reaction": "like", "client_ts": 1.5}, "invalid_client_ts"),
        ({"reaction": "like", "client_ts": 2.0**53 + 2}, "invalid_client_ts"),
        ({"reaction": "like", "client_ts": "1725300000000"}, "invalid_client_ts"),
        ({"reaction": "like", "client_ts": None}, "invalid_client_ts"),
        ([{"reaction": "like"}], "invalid_body"),
        ("like", "invalid_body"),
    ],
)
async def test_invalid_bodies_are_422(http: httpx.AsyncClient, body: Any, code: str) -> None:
    raw = json.dumps(body).encode()  # the stdlib writes integers of any size
    response = await http.put(_url(), content=raw, headers={"content-type": "application/json"})
    assert_error(response, 422, code)


@pytest.mark.parametrize("method", ["GET", "POST", "PATCH"])
async def test_other_methods_are_405_with_the_error_shape(
    http: httpx.AsyncClient, method: str
) -> None:
    response = await http.request(method, _url(), json={"reaction": "like"})
    assert_error(response, 405, "method_not_allowed")
    assert "PUT" in response.headers["allow"]


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/%ff%fe",
        "/v1/articles//reactions/u",
        "/v1/articles/a/b/reactions/u",
        "/v1/articles/a%2Fb/reactions/u",
        "/" + "x" * 8000,
        "/v1/articles/\u00e9/reactions/\u00fc",
    ],
)
async def test_weird_paths_get_an_error_shape_not_a_500(http: httpx.AsyncClient, path: str) -> None:
    response = await http.put(path, json={"reaction": "like"})
    assert 400 <= response.status_code < 500
    assert_error(response, response.status_code)


def test_huge_headers_and_raw_garbage_never_get_a_500(ingest: Service) -> None:
    requests = [
        b"PUT /v1/articles/a/reactions/u HTTP/1.1\r\nHost: x\r\nX-Big: "
        + b"h" * 100_000
        + b"\r\nContent-Type: application/json\r\nContent-Length: 19\r\n\r\n"
        + b'{"reaction":"like"}',
        b"PUT /v1/articles/a/reactions/u HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
        b"\r\nContent-Length: 19\r\n\r\n\xff\xfe\xfd" + b"a" * 16,
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


async def test_a_client_leaving_mid_body_is_no_server_error(ingest: Service) -> None:
    async with httpx.AsyncClient(base_url=ingest.url, timeout=30) as http:

        async def metrics() -> str:
            return (await http.get("/metrics")).text

        before = _put_400s(await metrics())
        _reader, writer = await asyncio.open_connection("127.0.0.1", ingest.port)
        writer.write(
            b"PUT /v1/articles/a/reactions/gone HTTP/1.1\r\nHost: x\r\n"
            b'Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"reac'
        )
        await writer.drain()
        writer.close()
        await writer.wait_closed()
        text = await eventually(
            metrics, lambda t: _put_400s(t) > before, what="this request's 400 to be counted"
        )
    assert _put_400s(text) == before + 1

    # Runs last in this module: nothing any test above sent may have produced a 5xx.
    statuses = {
        line.split('status="', 1)[1].split('"', 1)[0]
        for line in text.splitlines()
        if line.startswith("reactions_http_requests_total{")
    }
    assert statuses and not {s for s in statuses if s.startswith("5")}
    assert "unhandled_error" not in ingest.process.log_path.read_text()


def _put_400s(metrics: str) -> float:
    """PUTs on the write route answered 400, as counted in /metrics."""
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("reactions_http_requests_total{")
        and f'route="{ROUTE}"' in line
        and 'method="PUT"' in line
        and 'status="400"' in line
    )
