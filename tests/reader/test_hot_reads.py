"""Count reads answered from pre-rendered tallies (services/reader/hot_reads.py, store.py):
the same bytes, headers, ETags, 304s and metrics as the framework's routes, which answer
any request carrying more than a plain read (here an extra query parameter); a change, a
new seq or an invalidation renders again, and an unchanged reload reuses the bytes."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import orjson
import pytest
from redis.asyncio import Redis
from starlette.types import Message, Receive, Scope, Send

from deploy.local.redis import RedisServer
from services.reader.hot_reads import HotReads
from services.reader.store import TallyStore
from services.reader.view import ViewState
from shared.reactions import DEFAULT_TYPES, ReactionSet
from shared.tallies import CHANGES_CHANNEL, READS, connect_redis, counts_key
from tests.support import ServiceFactory, eventually, metric

ALLOWED = "https://news.example"
IDS = "h1,h2,h3,h1"


def answer(response: httpx.Response) -> tuple[int, list[tuple[str, str]], bytes]:
    """Status, headers in order (less the date) and body."""
    headers = [(k, v) for k, v in response.headers.multi_items() if k != "date"]
    return response.status_code, headers, response.content


@pytest.mark.parametrize("origins", ["*", ALLOWED])
async def test_plain_reads_answer_as_the_routes_do(
    start_service: ServiceFactory, redis: Redis, origins: str
) -> None:
    await redis.hset(counts_key("h1"), mapping={"love": 3, "wow": 1, "@fence": "2:40"})
    await redis.hset(counts_key("h2"), mapping={"like": 1})
    reader = start_service("reader", env={"REACTIONS_ALLOWED_ORIGINS": origins})
    async with httpx.AsyncClient(base_url=reader.url, timeout=10) as http:
        for plain, via_app in (
            ("/v1/articles/h1/reactions", "/v1/articles/h1/reactions?via=app"),
            (f"/v1/reactions?ids={IDS}", f"/v1/reactions?ids={IDS}&via=app"),
            ("/v1/reactions?ids=h1%2Ch2", "/v1/reactions?via=app&ids=h1%2Ch2"),
        ):
            etag = (await http.get(plain)).headers["etag"]
            for headers in (
                {},
                {"Origin": ALLOWED},
                {"Origin": "https://elsewhere.example"},
                {"If-None-Match": etag},
                {"If-None-Match": f'"other", W/{etag}', "Origin": ALLOWED},
                {"If-None-Match": '"other"'},
            ):
                fast = answer(await http.get(plain, headers=headers))
                assert fast == answer(await http.get(via_app, headers=headers)), (plain, headers)
                assert fast[0] == (304 if etag in headers.get("If-None-Match", "") else 200)


async def test_bulk_body_is_the_individual_tallies_and_metrics_count_both(
    reader_with_redis: tuple[str, Redis],
) -> None:
    url, redis = reader_with_redis
    await redis.hset(counts_key("b1"), mapping={"sad": 2, "@fence": "0:7"})
    route = {"route": "/v1/reactions", "method": "GET"}
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        before = await metric(url, "reactions_http_requests_total", {**route, "status": "200"})
        bulk = await http.get("/v1/reactions?ids=b1,b2,b1")
        singles = {a: (await http.get(f"/v1/articles/{a}/reactions")).json() for a in ("b1", "b2")}
        expected = {
            a: {k: v for k, v in t.items() if k != "article_id"} for a, t in singles.items()
        }
        assert bulk.content == orjson.dumps({"articles": expected})
        assert bulk.json()["articles"]["b1"]["seq"] == 7
        revalidated = await http.get(
            "/v1/reactions?ids=b1,b2", headers={"If-None-Match": bulk.headers["etag"]}
        )
        assert revalidated.status_code == 304
        after = await metric(url, "reactions_http_requests_total", {**route, "status": "200"})
        assert after - before == 1
        assert await metric(url, "reactions_http_requests_total", {**route, "status": "304"}) >= 1


async def test_a_change_announced_on_rx_changed_is_served_at_once(
    reader_with_redis: tuple[str, Redis],
) -> None:
    url, redis = reader_with_redis
    await redis.hset(counts_key("c1"), mapping={"like": 1, "@fence": "1:3"})
    async with (
        httpx.AsyncClient(base_url=url, timeout=httpx.Timeout(10, read=30)) as http,
        # An open stream holds the process's subscription to rx:changed.
        http.stream("GET", "/v1/stream?ids=c1") as stream,
    ):
        lines = stream.aiter_lines()
        async for line in lines:
            if line.startswith("data:"):
                break
        first = await http.get("/v1/reactions?ids=c1,c2")
        one = await http.get("/v1/articles/c1/reactions")
        # Same counts, a later event: the seq alone changes the bodies and their ETags.
        await redis.hset(counts_key("c1"), "@fence", "1:9")
        await redis.publish(CHANGES_CHANNEL, orjson.dumps(["c1"]))
        async for line in lines:
            if line.startswith("data:"):  # the feed has dropped the cached tally
                assert orjson.loads(line[5:])["seq"] == 9
                break
        bulk = await http.get("/v1/reactions?ids=c1,c2")
        again = await http.get("/v1/articles/c1/reactions")
    assert bulk.json()["articles"]["c1"]["seq"] == 9 and again.json()["seq"] == 9
    assert bulk.headers["etag"] != first.headers["etag"]
    assert again.headers["etag"] != one.headers["etag"]
    assert again.json()["counts"] == one.json()["counts"]


@pytest.fixture
def reader_with_redis(start_service: ServiceFactory, redis: Redis) -> tuple[str, Redis]:
    """A reader's URL and a client on its (emptied) Redis."""
    return start_service("reader").url, redis


@pytest.fixture
async def store(redis_server: RedisServer, redis: Redis, topic: str) -> AsyncIterator[TallyStore]:
    """A tally store as the reader's (bytes from Redis), with a 50 ms cache."""
    client = connect_redis(redis_server.url, READS)
    reactions = ReactionSet.load(list(DEFAULT_TYPES))
    view = ViewState(client, topic)
    yield TallyStore(client, reactions, cache_ttl=0.05, entries=100, view=view)
    await client.aclose()


async def test_an_unchanged_reload_reuses_the_rendering_a_change_renders_again(
    store: TallyStore, redis: Redis
) -> None:
    await redis.hset(counts_key("r1"), mapping={"funny": 5, "@fence": "0:1"})
    first = await store.tally("r1")
    await eventually(lambda: _fresh(store, "r1"), lambda t: t is None, what="the entry to expire")
    assert await store.tally("r1") is first  # read again from Redis, the same row
    await redis.hincrby(counts_key("r1"), "funny", 1)
    store.cache.invalidate(["r1"])
    changed = await store.tally("r1")
    assert changed.tally.counts != first.tally.counts
    assert changed.fragment.startswith(b'"r1":{"counts":{') and changed.fragment != first.fragment
    assert changed.etag != first.etag


async def _fresh(store: TallyStore, article_id: str) -> object:
    return store.fresh(article_id)


async def test_hot_reads_answer_plain_reads_and_hand_on_the_rest(store: TallyStore) -> None:
    handed: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        handed.append(scope["path"] + "?" + scope["query_string"].decode())
        await send({"type": "http.response.start", "status": 599, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    hot = HotReads(app, ["*"])

    async def status(path: str, query: bytes = b"") -> int:
        sent: list[Message] = []

        async def send(message: Message) -> None:
            sent.append(message)

        async def receive() -> Message:
            return {"type": "http.request"}

        scope = {
            "type": "http",
            "method": "GET",
            "path": path,
            "query_string": query,
            "headers": [],
            "state": {"store": store},
        }
        await hot(scope, receive, send)
        return int(sent[0]["status"])

    assert await status("/v1/articles/x1/reactions") == 200
    assert await status("/v1/reactions", b"ids=x1,x2") == 200
    assert await status("/v1/reactions", b"ids=x1%2Cx2") == 200
    assert not handed
    for path, query in (
        ("/v1/articles/x1/reactions", b"user_id=u"),
        ("/v1/articles/bad id/reactions", b""),
        ("/v1/articles/a/b/reactions", b""),
        ("/v1/reactions", b"ids=x1&user_id=u"),
        ("/v1/reactions", b"ids="),
        ("/v1/reactions", b"ids=ok,b@d"),
        ("/v1/reactions", b""),
        ("/v1/articles/x1/reactions/stream", b""),
    ):
        assert await status(path, query) == 599, (path, query)
    assert len(handed) == 8
