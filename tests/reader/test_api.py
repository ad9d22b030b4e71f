"""The reader's HTTP contract against a real reader process and a real Redis.

Tallies are written straight into Redis in the aggregator's layout (shared/tallies.py):
this module tests the read side of that contract; the live tests drive the real pipeline.
"""

from __future__ import annotations

import asyncio
import re
import time
import urllib.parse
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from deploy.local.client import MintedTokens, bearer
from deploy.local.services import Service
from services.reader.trending import WINDOW_MINUTES
from shared.reactions import DEFAULT_TYPES
from shared.tallies import counts_key, trend_key
from tests.support import ServiceFactory, assert_error, eventually, silent_listener
from widget.build import CLASSIC, MODULE

ZEROS = dict.fromkeys(DEFAULT_TYPES, 0)


async def test_tally_is_zero_filled_with_its_seq(http: httpx.AsyncClient, redis: Redis) -> None:
    await redis.hset(counts_key("a1"), mapping={"love": 2, "angry": 1, "@fence": "3:7"})

    plain = await http.get("/v1/articles/a1/reactions")
    assert plain.status_code == 200
    assert plain.json() == {
        "article_id": "a1",
        "counts": {**ZEROS, "love": 2, "angry": 1},
        "total": 3,
        "seq": 7,  # the fence's offset: the last event applied to the article
    }
    assert list(plain.json()["counts"]) == list(DEFAULT_TYPES)  # display order
    assert plain.headers["cache-control"] == "public, max-age=1, stale-while-revalidate=5"


async def test_unknown_article_is_all_zeros(http: httpx.AsyncClient) -> None:
    response = await http.get("/v1/articles/never.seen:1~x-y_z/reactions")
    assert response.status_code == 200
    assert response.json() == {
        "article_id": "never.seen:1~x-y_z",
        "counts": ZEROS,
        "total": 0,
        "seq": -1,
    }


async def test_etag_and_if_none_match(http: httpx.AsyncClient, redis: Redis) -> None:
    await redis.hset(counts_key("e1"), "like", 1)
    first = await http.get("/v1/articles/e1/reactions")
    etag = first.headers["etag"]
    again = await http.get("/v1/articles/e1/reactions", headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == etag
    listed = await http.get(
        "/v1/articles/e1/reactions", headers={"If-None-Match": f'"other", W/{etag}'}
    )
    assert listed.status_code == 304
    other = await http.get("/v1/articles/e1/reactions", headers={"If-None-Match": '"nope"'})
    assert other.status_code == 200

    await redis.hset(counts_key("e1"), "like", 2)
    changed = await http.get("/v1/articles/e1/reactions", headers={"If-None-Match": etag})
    # The cache may serve the old tally for its bounded staleness, then the new one.
    deadline = time.monotonic() + 30
    while changed.status_code == 304 and time.monotonic() < deadline:
        changed = await http.get("/v1/articles/e1/reactions", headers={"If-None-Match": etag})
    assert changed.status_code == 200
    assert changed.json()["counts"]["like"] == 2
    assert changed.headers["etag"] != etag


async def test_bulk(http: httpx.AsyncClient, redis: Redis) -> None:
    await redis.hset(counts_key("b1"), mapping={"wow": 4, "@fence": "1:12"})
    await redis.hset(counts_key("b2"), mapping={"sad": 1, "like": 1, "@fence": "0:3"})

    response = await http.get("/v1/reactions", params={"ids": "b1,b2,b3,b1,"})
    assert response.status_code == 200
    assert response.headers["cache-control"] == "public, max-age=1, stale-while-revalidate=5"
    assert response.json() == {
        "articles": {
            "b1": {"counts": {**ZEROS, "wow": 4}, "total": 4, "seq": 12},
            "b2": {"counts": {**ZEROS, "sad": 1, "like": 1}, "total": 2, "seq": 3},
            "b3": {"counts": ZEROS, "total": 0, "seq": -1},
        }
    }
    assert (
        await http.get(
            "/v1/reactions",
            params={"ids": "b1,b2"},
            headers={"If-None-Match": response.headers["etag"]},
        )
    ).status_code == 200  # a different set is a different body

    hundred = ",".join(f"x{i}" for i in range(100))
    full = await http.get("/v1/reactions", params={"ids": hundred})
    assert full.status_code == 200 and len(full.json()["articles"]) == 100
    # 101 distinct ids is too many; 100 distinct plus duplicates is not.
    assert_error(
        await http.get("/v1/reactions", params={"ids": hundred + ",x100"}), 422, "too_many_ids"
    )
    assert (await http.get("/v1/reactions", params={"ids": hundred + ",x0,x1"})).status_code == 200
    assert_error(await http.get("/v1/reactions", params={"ids": ""}), 422, "invalid_ids")
    assert_error(await http.get("/v1/reactions", params={"ids": ",,"}), 422, "invalid_ids")
    assert_error(await http.get("/v1/reactions"), 422, "invalid_request")
    assert_error(
        await http.get("/v1/reactions", params={"ids": "ok,b@d"}), 422, "invalid_article_id"
    )


@pytest.mark.parametrize(
    "path",
    [
        "/v1/articles/bad%20id/reactions",
        "/v1/articles/" + "a" * 129 + "/reactions",
        "/v1/articles/%C3%A9t%C3%A9/reactions",
        "/v1/articles/bad%00id/reactions/stream",
        "/v1/trending?reaction=nope",
        "/v1/trending?window=2h",
        "/v1/trending?limit=0",
        "/v1/trending?limit=101",
        "/v1/trending?limit=ten",
        "/v1/reactions?ids=%FF%FE",
        "/demo?article=",
        "/demo?article=no%20spaces",
    ],
)
async def test_bad_input_gets_422_in_the_error_shape(http: httpx.AsyncClient, path: str) -> None:
    assert_error(await http.get(path), 422)


async def test_no_500_on_odd_requests(http: httpx.AsyncClient) -> None:
    odd = [
        ("GET", "/v1/articles//reactions"),
        ("GET", "/v1/articles/a/reactions/extra"),
        ("POST", "/v1/articles/a/reactions"),
        ("DELETE", "/v1/reactions?ids=a"),
        ("GET", "/v1/articles/a/reactions?user_id=u&user_id=v"),
        ("GET", "/v1/me/reactions?ids=a"),
        ("POST", "/v1/me/reactions?ids=a"),
        ("GET", "/v1/reactions?ids=a&ids=b"),
        ("GET", "/v1/trending?reaction=&window=&limit="),
        ("GET", "/nowhere"),
        ("GET", "/v1/articles/a%2Fb/reactions"),
    ]
    for method, path in odd:
        response = await http.request(method, path, headers={"If-None-Match": ", ,,W/"})
        assert response.status_code < 500, (method, path, response.text)
        if response.status_code >= 400:
            assert "error" in response.json(), (method, path)


async def test_thousands_of_query_parameters_are_refused_before_parsing(
    http: httpx.AsyncClient, redis: Redis
) -> None:
    """A script's `?ids=a&ids=a&…` (2,600 in a URL the edge passes) would cost 25 page reads
    of parsing; every route refuses more than 16 parameters as one answer."""
    await redis.hset(counts_key("a"), mapping={"love": 1, "@fence": "0:1"})
    flood = "&".join(["ids=a"] * 2600)
    for path in ("/v1/reactions", "/v1/trending", "/v1/articles/a/reactions", "/v1/stream"):
        body = assert_error(await http.get(f"{path}?{flood}"), 400, "too_many_parameters")
        assert "16" in body["error"]["message"], path
    # Sixteen go on to the route, whose own rules answer (here the last ids wins).
    sixteen = await http.get("/v1/reactions?" + "&".join(["ids=a"] * 16))
    assert sixteen.status_code == 200 and list(sixteen.json()["articles"]) == ["a"]
    assert_error(await http.get("/v1/reactions?" + "&".join(["ids=a"] * 17)), 400)


async def test_trending_merges_minute_buckets(http: httpx.AsyncClient, redis: Redis) -> None:
    now = int(time.time()) // 60
    # Buckets as the aggregator writes them: net deltas per article per minute.
    await redis.zadd(trend_key("angry", now), {"t1": 3, "t2": 1})
    await redis.zadd(trend_key("angry", now - 2), {"t2": 4, "t3": 2, "t4": -5})
    await redis.zadd(trend_key("angry", now - 30), {"t3": 10})  # inside 1h, outside 5m
    await redis.zadd(trend_key("angry", now - 600), {"t5": 50})  # inside 24h only
    await redis.zadd(trend_key("angry", now - WINDOW_MINUTES["24h"] - 5), {"t6": 99})  # outside
    await redis.zadd(trend_key("all", now), {"t1": 7})

    async def trending(**params: Any) -> list[tuple[str, int]]:
        response = await http.get("/v1/trending", params=params)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["reaction"] == params.get("reaction", "all")
        return [(a["article_id"], a["count"]) for a in body["articles"]]

    assert await trending(reaction="angry", window="5m") == [("t2", 5), ("t1", 3), ("t3", 2)]
    assert await trending(reaction="angry", window="1h") == [("t3", 12), ("t2", 5), ("t1", 3)]
    assert await trending(reaction="angry", window="24h", limit=2) == [("t5", 50), ("t3", 12)]
    assert await trending(reaction="all", window="5m") == [("t1", 7)]
    assert await trending(reaction="wow", window="24h") == []
    response = await http.get("/v1/trending", params={"reaction": "angry", "window": "5m"})
    assert response.json()["window"] == "5m"


async def test_config_openapi_widget_and_demo(http: httpx.AsyncClient) -> None:
    config = await http.get("/v1/config")
    assert config.json()["lang"] == "en"
    assert [r["id"] for r in config.json()["reactions"]] == list(DEFAULT_TYPES)
    assert config.json()["reactions"][2] == {"id": "love", "label": "Love", "emoji": "❤️"}

    spec = (await http.get("/openapi.json")).json()
    paths = spec["paths"]
    for path in (
        "/v1/articles/{article_id}/reactions",
        "/v1/reactions",
        "/v1/me/reactions",
        "/v1/articles/{article_id}/reactions/stream",
        "/v1/trending",
        "/v1/config",
        "/widget.js",
        "/demo",
        "/v1/articles/{article_id}/reactions.html",
        "/v1/widget",
        "/widget.{version}.js",
        "/widget.mjs",
        "/widget.{version}.mjs",
    ):
        assert "get" in paths[path], path
    tally = paths["/v1/articles/{article_id}/reactions"]["get"]
    assert {"200", "304", "400", "422", "503"} <= set(tally["responses"])
    assert "security" not in tally  # public: no credential, cacheable
    mine = paths["/v1/me/reactions"]["get"]
    assert mine["security"] == [{"readerToken": []}]
    assert spec["components"]["securitySchemes"]["readerToken"]["scheme"] == "bearer"
    assert (
        "text/event-stream"
        in paths["/v1/articles/{article_id}/reactions/stream"]["get"]["responses"]["200"]["content"]
    )

    widget = await http.get("/widget.js")
    assert widget.headers["content-type"].startswith("text/javascript")
    assert widget.headers["cache-control"] == "public, max-age=300"
    assert widget.content == CLASSIC.read_bytes()  # the classic script
    unchanged = await http.get("/widget.js", headers={"If-None-Match": widget.headers["etag"]})
    assert unchanged.status_code == 304
    module = await http.get("/widget.mjs")
    assert module.headers["content-type"].startswith("text/javascript")
    assert module.headers["cache-control"] == "public, max-age=300"
    assert module.content == MODULE.read_bytes()  # the ES module

    demo = await http.get("/demo")
    assert demo.headers["content-type"].startswith("text/html")
    assert 'ingest="http://ingest.example:9000"' in demo.text
    assert demo.text.count("<reaction-bar") == 5
    assert '<script src="/widget.js"' in demo.text


async def test_redis_down_gives_503_in_the_error_shape(
    start_service: ServiceFactory, tokens: MintedTokens
) -> None:
    from deploy.local.process import free_port

    reader = start_service(
        "reader", env={"REACTIONS_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}, wait=False
    )
    async with httpx.AsyncClient(base_url=reader.url, timeout=10) as http:

        async def listening() -> bool:
            try:
                await http.get("/healthz")
            except httpx.TransportError:
                return False
            return True

        await eventually(listening, bool, what="the reader to listen")
        response = await http.get("/v1/articles/a1/reactions")
        assert_error(response, 503, "redis_unavailable")
        assert response.headers["retry-after"] == "1"
        assert_error(await http.get("/v1/reactions?ids=a,b"), 503, "redis_unavailable")
        assert_error(await http.get("/v1/articles/a1/reactions.html"), 503, "redis_unavailable")
        assert_error(await http.get("/v1/trending"), 503, "redis_unavailable")
        mine = await http.get("/v1/me/reactions?ids=a", headers=bearer(tokens.token("a.u1")))
        assert_error(mine, 503, "redis_unavailable")
        assert (await http.get("/readyz")).status_code == 503


async def test_a_frozen_redis_gives_503_and_readyz_names_it_within_their_bounds(
    start_service: ServiceFactory,
) -> None:
    """A Redis that accepts connections and never answers (a stopped process, a hung
    proxy): reads fail within the 2 s socket timeout, /readyz within its 1 s probe."""
    with silent_listener() as port:
        reader = start_service(
            "reader", env={"REACTIONS_REDIS_URL": f"redis://127.0.0.1:{port}/0"}, wait=False
        )
        async with httpx.AsyncClient(base_url=reader.url, timeout=30) as http:

            async def listening() -> bool:
                try:
                    await http.get("/healthz")
                except httpx.TransportError:
                    return False
                return True

            await eventually(listening, bool, what="the reader to listen")
            started = time.monotonic()
            ready = await http.get("/readyz")
            assert time.monotonic() - started < 1.5
            assert ready.status_code == 503
            assert ready.json()["checks"] == {"redis": False}
            for path in ("/v1/articles/a1/reactions", "/v1/reactions?ids=a,b"):
                started = time.monotonic()
                response = await http.get(path)
                assert time.monotonic() - started < 2 * 2.0 + 1, path
                assert_error(response, 503, "redis_unavailable")
                assert response.headers["retry-after"] == "1"


async def test_cors_preflights(start_service: ServiceFactory) -> None:
    allowed = "https://news.example"
    reader = start_service("reader", env={"REACTIONS_ALLOWED_ORIGINS": allowed})
    async with httpx.AsyncClient(base_url=reader.url, timeout=10) as http:
        url = "/v1/reactions?ids=a,b"
        granted = await http.options(
            url, headers={"origin": allowed, "access-control-request-method": "GET"}
        )
        assert granted.status_code == 200, granted.text
        assert granted.headers["access-control-allow-origin"] == allowed
        own = await http.options(
            "/v1/me/reactions?ids=a",
            headers={
                "origin": allowed,
                "access-control-request-method": "GET",
                "access-control-request-headers": "authorization",
            },
        )
        assert own.status_code == 200, own.text
        assert "authorization" in own.headers["access-control-allow-headers"].lower()
        assert "access-control-allow-credentials" not in own.headers
        refused = await http.options(
            url, headers={"origin": "https://evil.example", "access-control-request-method": "GET"}
        )
        assert_error(refused, 400, "cors_rejected")
        assert "access-control-allow-origin" not in refused.headers


async def test_bulk_etag_gives_304(http: httpx.AsyncClient, redis: Redis) -> None:
    await redis.hset(counts_key("p1"), "funny", 2)
    first = await http.get("/v1/reactions", params={"ids": "p1,p2"})
    again = await http.get(
        "/v1/reactions", params={"ids": "p1,p2"}, headers={"If-None-Match": first.headers["etag"]}
    )
    assert again.status_code == 304


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    article=st.text(max_size=140),
    user=st.one_of(st.none(), st.text(max_size=70)),
    ids=st.text(max_size=300),
    reaction=st.text(max_size=20),
    window=st.text(max_size=5),
    limit=st.text(max_size=5),
    token=st.text(max_size=300),
)
async def test_no_input_gets_a_500(
    http: httpx.AsyncClient,
    article: str,
    user: str | None,
    ids: str,
    reaction: str,
    window: str,
    limit: str,
    token: str,
) -> None:
    quoted = urllib.parse.quote(article, safe="")
    params = {"user_id": user} if user is not None else {}
    value = f"Bearer {token}".strip()  # what an HTTP client may send at all
    auth = {"authorization": value} if value.isascii() and value.isprintable() else {}
    requests = [
        http.build_request("GET", f"/v1/articles/{quoted}/reactions", params=params),
        http.build_request("GET", "/v1/reactions", params={"ids": ids, **params}),
        http.build_request("GET", "/v1/me/reactions", params={"ids": ids}, headers=auth),
        http.build_request(
            "GET", "/v1/trending", params={"reaction": reaction, "window": window, "limit": limit}
        ),
    ]
    for request in requests:
        response = await http.send(request)
        assert response.status_code in (200, 400, 401, 404, 422), (request.url, response.text)
        if response.status_code != 200:
            assert_error(response, response.status_code)


async def test_a_cache_hit_costs_no_redis_read(http: httpx.AsyncClient, redis: Redis) -> None:
    await redis.hset(counts_key("hot"), "love", 9)

    async def hmget_calls() -> int:
        stats = await redis.info("commandstats")
        return int(stats.get("cmdstat_hmget", {}).get("calls", 0))

    async def lookups() -> dict[str, float]:
        text = (await http.get("/metrics")).text
        found = re.findall(r'^reactions_reader_cache_total\{result="(\w+)"\} (\S+)$', text, re.M)
        return {result: float(value) for result, value in found}

    async def reread() -> tuple[float, int]:
        """Cache hits and Redis reads of a read that closely follows one of the same article."""
        await http.get("/v1/articles/hot/reactions")
        before_calls, before = await hmget_calls(), await lookups()
        assert (await http.get("/v1/articles/hot/reactions")).json()["counts"]["love"] == 9
        after = await lookups()
        return after["hit"] - before["hit"], await hmget_calls() - before_calls

    # Retried only in case the machine stalls past the cache's 500 ms between the two reads;
    # with the cache off every reread is a miss and a Redis read, and this fails.
    await eventually(reread, lambda r: r == (1, 0), timeout=10, what="a reread from the cache")

    before_calls, before = await hmget_calls(), await lookups()
    responses = await asyncio.gather(*(http.get("/v1/articles/hot/reactions") for _ in range(100)))
    assert all(r.json()["counts"]["love"] == 9 for r in responses)
    calls, after = await hmget_calls() - before_calls, await lookups()
    hits, misses = after["hit"] - before["hit"], after["miss"] - before["miss"]
    assert hits + misses == 100
    assert calls == misses  # every miss is one Redis read, a hit is none


async def test_a_burst_of_reads_waits_for_redis_connections_instead_of_failing(
    reader: Service,
) -> None:
    # More concurrent reads of uncached articles than the Redis pool has connections
    # (a page of comment widgets opening at once): each waits for a connection.
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    async with httpx.AsyncClient(base_url=reader.url, timeout=30, limits=limits) as client:
        responses = await asyncio.gather(
            *(client.get(f"/v1/articles/burst-{i}/reactions") for i in range(400))
        )
    assert [r.status_code for r in responses] == [200] * 400
