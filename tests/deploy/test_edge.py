"""The reference nginx edge (deploy/nginx/) in front of a real reader and Redis: cached
counts with request collapsing, 304s, what a site's pages read (config per language, the bar
as HTML, the versioned widget) cached too, a live stream passed through unbuffered, the
client address forwarded to the reader's stream cap, a reader's own votes limited per
address, and no ops endpoint reachable. In front of a real ingest: writes pass, and what
uvicorn would let a script hold (slow headers, many requests in flight, large bodies) is
refused at the edge."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import orjson
import pytest
from pydantic import ValidationError
from redis.asyncio import Redis

from deploy.local.client import VoteClient
from deploy.local.edge import IngestEdge, NginxEdge, render_edge_config
from deploy.local.process import free_port
from deploy.local.redis import RedisServer
from deploy.local.services import Service, service_env
from deploy.local.stack import LocalSettings, StackConfig
from shared.settings import CommonSettings
from shared.tallies import CHANGES_CHANNEL, counts_key, epoch_key
from tests.support import (
    ServiceFactory,
    assert_error,
    closed_by_peer,
    eventually,
    held_open,
    mark_view,
    metric,
    requests_awaiting_bodies,
)

TALLY_ROUTE = {"route": "/v1/articles/{article_id}/reactions", "method": "GET", "status": "200"}
TOPIC = CommonSettings.model_fields["topic"].default  # the edge's reader's


@pytest.fixture(autouse=True)
async def marked_view(redis: Redis) -> None:
    """The session's Redis, emptied and marked as the aggregator marks it when it starts."""
    await mark_view(redis, TOPIC)


@pytest.fixture
def edge(redis_server: RedisServer, tmp_path: Path) -> Iterator[tuple[NginxEdge, Service]]:
    """A reader that believes the edge's X-Forwarded-For, and nginx in front of it."""
    env = service_env(
        redis_url=redis_server.url,
        overrides={
            "REACTIONS_TRUSTED_PROXIES": "127.0.0.1/32",
            "REACTIONS_SSE_MAX_STREAMS_PER_CLIENT": "1",
        },
    )
    reader = Service("reader", free_port(), env, tmp_path / "logs")
    nginx = NginxEdge(tmp_path / "edge", free_port(), reader.port)
    try:
        reader.start()
        nginx.start()
        yield nginx, reader
    finally:
        nginx.stop()
        reader.stop()


WriteEdgeFactory = Callable[[str], tuple[NginxEdge, Service]]


@pytest.fixture
def write_edge(start_service: ServiceFactory, tmp_path: Path) -> Iterator[WriteEdgeFactory]:
    """Ingest believing the edge's X-Forwarded-For, and nginx in front of it with a client
    timeout of the test's choosing."""
    started: list[NginxEdge] = []

    def start(client_timeout: str) -> tuple[NginxEdge, Service]:
        ingest = start_service("ingest", env={"REACTIONS_TRUSTED_PROXIES": "127.0.0.1/32"})
        nginx = NginxEdge(
            tmp_path / "edge",
            free_port(),
            free_port(),  # no reader: these tests only write
            ingest=IngestEdge(free_port(), f"127.0.0.1:{ingest.port}", client_timeout),
        )
        started.append(nginx)
        nginx.start()
        return nginx, ingest

    yield start
    for nginx in started:
        nginx.stop()


async def origin_reads(reader: Service) -> float:
    return await metric(reader.url, "reactions_http_requests_total", TALLY_ROUTE)


async def test_counts_are_cached_and_concurrent_misses_collapse(
    edge: tuple[NginxEdge, Service], redis: Redis
) -> None:
    nginx, reader = edge
    async with httpx.AsyncClient(base_url=nginx.url, timeout=10) as http:
        first = await http.get("/v1/articles/e1/reactions")
        second = await http.get("/v1/articles/e1/reactions")
        assert first.status_code == second.status_code == 200
        assert first.headers["x-cache-status"] == "MISS"
        assert second.headers["x-cache-status"] == "HIT"
        assert second.json() == first.json() == {**first.json(), "article_id": "e1"}

        # The browser's revalidation is answered by the edge itself.
        etag = second.headers["etag"]
        again = await http.get("/v1/articles/e1/reactions", headers={"If-None-Match": etag})
        assert again.status_code == 304

        before = await origin_reads(reader)
        answers = await asyncio.gather(
            *(http.get("/v1/articles/e-collapse/reactions") for _ in range(30))
        )
        assert {a.status_code for a in answers} == {200}
        assert await origin_reads(reader) - before == 1  # 30 concurrent misses, one read
        statuses = [a.headers["x-cache-status"] for a in answers]
        assert statuses.count("MISS") == 1, statuses

        bulk = await http.get("/v1/reactions?ids=e1,e2")
        assert (await http.get("/v1/reactions?ids=e1,e2")).headers["x-cache-status"] == "HIT"
        assert bulk.status_code == 200
        versioned = (await http.get("/v1/widget")).json()["path"]
        site_reads = (
            "/v1/config",
            "/v1/config?lang=de",
            "/widget.js",
            versioned,
            "/v1/articles/e1/reactions.html?lang=de&hide-counts-below=5",
        )
        for path in site_reads:
            await http.get(path)
            assert (await http.get(path)).headers["x-cache-status"] == "HIT", path
        # Each language is its own entry: the edge never answers German to an English URL.
        german = await http.get("/v1/config?lang=de")
        assert (german.json()["lang"], (await http.get("/v1/config")).json()["lang"]) == (
            "de",
            "en",
        )
        fragment = await http.get("/v1/articles/e1/reactions.html?lang=de&hide-counts-below=5")
        assert fragment.headers["content-type"] == "text/html; charset=utf-8"
        assert 'lang="de"' in fragment.text
        cached = await http.get(
            "/v1/articles/e1/reactions.html?lang=de&hide-counts-below=5",
            headers={"If-None-Match": fragment.headers["etag"]},
        )
        assert cached.status_code == 304
        widget = await http.get(versioned)
        assert widget.headers["cache-control"] == "public, max-age=31536000, immutable"
        # A reader's own choice is private: never stored.
        await http.get("/v1/articles/e1/reactions?user_id=u1")
        mine = await http.get("/v1/articles/e1/reactions?user_id=u1")
        assert mine.headers["x-cache-status"] != "HIT"


async def test_a_page_s_bulk_read_outlives_the_readers_max_age_at_the_edge(
    edge: tuple[NginxEdge, Service],
) -> None:
    nginx, _ = edge
    page, tally = "/v1/reactions?ids=p1,p2,p3", "/v1/articles/p1/reactions"
    async with httpx.AsyncClient(base_url=nginx.url, timeout=10) as http:
        assert (await http.get(page)).headers["x-cache-status"] == "MISS"
        assert (await http.get(tally)).headers["x-cache-status"] == "MISS"

        async def tally_expired() -> str:
            return (await http.get(tally)).headers["x-cache-status"]

        # The single tally follows the reader's max-age=1; the page read is kept longer.
        await eventually(tally_expired, lambda status: status != "HIT", timeout=10)
        kept = await http.get(page)
        assert kept.headers["x-cache-status"] == "HIT"
        # Browsers still get the reader's own policy.
        assert kept.headers["cache-control"] == "public, max-age=1, stale-while-revalidate=5"


async def test_the_edge_serves_its_last_good_counts_while_the_view_is_rebuilt(
    edge: tuple[NginxEdge, Service], redis: Redis
) -> None:
    """Redis lost its data: the reader answers 503 rebuilding (no zero for a cache to keep),
    and the edge keeps serving the copy it has; a URL it never cached gets the refusal."""
    nginx, reader = edge
    await redis.set(epoch_key(TOPIC), "epoch-1")
    await redis.hset(counts_key("rb-1"), mapping={"love": 3, "@fence": "0:9"})
    tally = "/v1/articles/rb-1/reactions"
    async with httpx.AsyncClient(base_url=nginx.url, timeout=10) as http:
        first = await http.get(tally)
        assert first.headers["x-cache-status"] == "MISS" and first.json()["counts"]["love"] == 3
        await redis.flushall()
        route = {"route": TALLY_ROUTE["route"], "method": "GET"}
        asked = await metric(reader.url, "reactions_http_requests_total", route)

        async def served() -> tuple[httpx.Response, float]:
            answer = await http.get(tally)
            return answer, await metric(reader.url, "reactions_http_requests_total", route)

        # Past its max-age the edge asks the reader again (in the background) and, refused,
        # keeps its copy: what it serves after that answer is still the count before.
        await eventually(served, lambda got: got[1] > asked, timeout=15, what="the edge asking")
        after = await http.get(tally)
        assert after.status_code == 200 and after.json() == first.json()
        assert after.headers["x-cache-status"] in {"STALE", "UPDATING"}
        assert_error(await http.get("/v1/articles/rb-2/reactions"), 503, "rebuilding")


async def test_ops_endpoints_are_not_reachable_through_the_edge(
    edge: tuple[NginxEdge, Service],
) -> None:
    nginx, _ = edge
    async with httpx.AsyncClient(base_url=nginx.url, timeout=10) as http:
        for path in ("/metrics", "/healthz", "/readyz", "/docs", "/redoc"):
            assert_error(await http.get(path), 404, "not_found")
        assert (await http.get("/openapi.json")).status_code == 200


async def test_a_live_stream_passes_through_unbuffered_and_the_client_is_seen(
    edge: tuple[NginxEdge, Service], redis: Redis
) -> None:
    nginx, _ = edge
    browser = {"X-Forwarded-For": "203.0.113.5"}
    async with (
        httpx.AsyncClient(base_url=nginx.url, timeout=httpx.Timeout(10, read=30)) as http,
        http.stream("GET", "/v1/stream?ids=live-e", headers=browser) as response,
    ):
        assert response.status_code == 200
        assert "x-cache-status" not in response.headers
        lines = response.aiter_lines()
        async for line in lines:
            if line.startswith("data:"):
                assert orjson.loads(line[5:])["total"] == 0
                break
        # The reader's cap (1 per client) sees the browser behind the edge, not the edge.
        assert_error(await http.get("/v1/stream?ids=x", headers=browser), 429)
        other = await http.get(
            "/v1/articles/x/reactions", headers={"X-Forwarded-For": "203.0.113.6"}
        )
        assert other.status_code == 200

        await redis.hincrby(counts_key("live-e"), "wow", 1)
        sent = time.monotonic()
        await redis.publish(CHANGES_CHANNEL, orjson.dumps(["live-e"]))
        async with asyncio.timeout(5):
            async for line in lines:
                if line.startswith("data:"):
                    assert orjson.loads(line[5:])["counts"]["wow"] == 1
                    break
        assert time.monotonic() - sent < 1.0  # not held in a buffer


def test_the_page_ttl_is_a_setting_of_the_local_stack(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REACTIONS_EDGE_PAGE_TTL", "45s")
    config = StackConfig.from_settings()
    render_edge_config(tmp_path, free_port(), "127.0.0.1:1", config.edge_page_ttl)
    assert "proxy_cache_valid 200 304 45s;" in (tmp_path / "reactions.conf").read_text()
    # nginx would refuse a malformed time at start; the setting refuses it first.
    with pytest.raises(ValidationError, match="edge_page_ttl"):
        LocalSettings(edge_page_ttl="30 seconds")


async def test_a_page_of_a_hundred_longest_ids_passes_the_edge_and_is_kept(
    edge: tuple[NginxEdge, Service],
) -> None:
    """100 ids of 128 characters, the most the contract allows, make a URL of about 13 KB:
    more than nginx's default 8 KB request line, which would answer 414, and a cache key
    larger than its default 4 KB proxy buffer, which would pass every such read to the
    reader and log an error line each time."""
    nginx, reader = edge
    ids = [f"{i:03d}".ljust(128, "x") for i in range(100)]
    query = "ids=" + ",".join(ids)
    route = {"route": "/v1/reactions", "method": "GET"}
    async with httpx.AsyncClient(base_url=nginx.url, timeout=10) as http:
        asked = await metric(reader.url, "reactions_http_requests_total", route)
        page = await http.get(f"/v1/reactions?{query}")
        assert page.status_code == 200, page.text[:200]
        assert sorted(page.json()["articles"]) == ids
        again = await http.get(f"/v1/reactions?{query}")
        assert again.headers.get("x-cache-status") == "HIT" and again.json() == page.json()
        assert await metric(reader.url, "reactions_http_requests_total", route) - asked == 1
        async with http.stream("GET", f"/v1/stream?{query}") as stream:
            assert stream.status_code == 200
            assert stream.headers["content-type"].startswith("text/event-stream")
    assert "not enough for cache key" not in nginx.process.log_path.read_text()


async def test_a_reader_s_own_votes_are_limited_per_address_at_the_edge(
    edge: tuple[NginxEdge, Service],
) -> None:
    """Never cached, they cost the reader a Redis read per article: 10 a second with bursts
    of 50 per address, answered in the API's error shape beyond that."""
    nginx, _ = edge
    async with httpx.AsyncClient(base_url=nginx.url, timeout=10) as http:
        page = {"Origin": "https://news.example"}
        answers = await asyncio.gather(
            *(http.get("/v1/me/reactions?ids=a1", headers=page) for _ in range(200))
        )
    refused = [a for a in answers if a.status_code == 429]
    assert refused, "200 requests at once passed a limit of 10/s with bursts of 50"
    assert_error(refused[0], 429, "rate_limited")
    assert refused[0].headers["retry-after"] == "1"
    assert refused[0].headers["access-control-allow-origin"] == "https://news.example"
    # The others reached the reader, which wants a token.
    passed = [a for a in answers if a.status_code != 429]
    assert passed and {a.status_code for a in passed} == {401}


async def test_writes_pass_the_write_edge_and_its_own_refusals_are_api_errors(
    write_edge: WriteEdgeFactory,
) -> None:
    nginx, _ = write_edge("10s")
    async with VoteClient(nginx.ingest_url, timeout=10) as votes:
        issued = await votes.new_reader()
        assert issued.status_code == 201, issued.text
        token = issued.json()["token"]
        voted = await votes.vote(token, "edge-w", "love")
        assert voted.status_code == 202, voted.text
        # The browser's CORS preflight reaches ingest, which answers it.
        preflight = await votes.http.options(
            votes.api.votes_url,
            headers={
                "Origin": "https://news.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, content-type",
            },
        )
        assert preflight.status_code == 200
        assert "authorization" in preflight.headers["access-control-allow-headers"].lower()

        # Over ingest's 1 KB: refused, in ingest's own words.
        big = votes.api.vote(token, "edge-w", "love")
        too_big = await votes.http.post(
            big.url, content=b" " * 2048 + (big.body or b""), headers=big.headers
        )
        assert_error(too_big, 413, "body_too_large")
        for path in ("/metrics", "/healthz", "/readyz", "/docs", "/redoc"):
            assert_error(await votes.http.get(nginx.ingest_url + path), 404, "not_found")


async def test_a_client_sending_its_headers_slowly_is_cut_off_at_the_edge_not_at_ingest(
    write_edge: WriteEdgeFactory,
) -> None:
    """uvicorn waits for ever for the rest of a request; the edge gives a client its
    timeout (1 s here)."""
    nginx, ingest = write_edge("1s")
    assert nginx.ingest is not None
    partial = b"POST /v1/readers HTTP/1.1\r\nHost: news.example\r\n"
    through_edge = held_open(nginx.ingest.port, partial)
    direct = held_open(ingest.port, partial)

    async def edge_closed() -> bool:
        return closed_by_peer(through_edge)

    try:
        await eventually(edge_closed, bool, timeout=15, what="the edge to close the connection")
        # Ingest alone still holds its connection, with no answer.
        assert not closed_by_peer(direct)
    finally:
        through_edge.close()
        direct.close()


async def test_an_address_with_too_many_requests_in_flight_is_refused_at_the_edge(
    write_edge: WriteEdgeFactory,
) -> None:
    """32 requests whose bodies have not arrived hold the address's share; the next one is
    refused at once, and the address is served again once they end."""
    nginx, _ = write_edge("30s")
    assert nginx.ingest is not None
    with requests_awaiting_bodies(nginx.ingest.port, 32) as pending:
        async with httpx.AsyncClient(base_url=nginx.ingest_url, timeout=10) as http:

            async def document() -> httpx.Response:
                # Ingest answers this itself; only the edge would refuse it.
                return await http.get("/openapi.json", headers={"Origin": "https://news.example"})

            # Each pending request counts once nginx has read its headers.
            answer = await eventually(document, lambda r: r.status_code == 429, timeout=10)
            assert "in flight" in assert_error(answer, 429, "rate_limited")["error"]["message"]
            assert answer.headers["retry-after"] == "1"
            # The page that sent it can read it (and so tell "too fast" from a failure).
            assert answer.headers["access-control-allow-origin"] == "https://news.example"
            assert "retry-after" in answer.headers["access-control-expose-headers"].lower()
            for conn in pending:
                conn.close()
            await eventually(document, lambda r: r.status_code == 200, timeout=10)
