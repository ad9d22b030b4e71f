"""A reader's own reactions with a token (`GET /v1/me/reactions`), and count reads that no
longer take a reader id, against a real reader process and a real Redis."""

from __future__ import annotations

import re

import httpx
from redis.asyncio import Redis

from deploy.local.client import MintedTokens, bearer
from shared.reactions import DEFAULT_TYPES
from shared.tallies import counts_key, readers_key
from tests.support import assert_error

ZEROS = dict.fromkeys(DEFAULT_TYPES, 0)


async def test_count_reads_refuse_user_id_and_name_the_call_to_use(
    http: httpx.AsyncClient,
) -> None:
    for path in (
        "/v1/articles/a1/reactions?user_id=u1",
        "/v1/reactions?ids=a1,a2&user_id=u1",
        "/v1/articles/a1/reactions/stream?user_id=u1",
        "/v1/articles/a1/reactions?user_id=",
    ):
        body = assert_error(await http.get(path), 400, "user_id_not_supported")
        assert "GET /v1/me/reactions" in body["error"]["message"], path


async def test_my_reactions_come_with_counts_and_seq_privately(
    http: httpx.AsyncClient, redis: Redis, tokens: MintedTokens
) -> None:
    await redis.hset(counts_key("m1"), mapping={"love": 2, "angry": 1, "@fence": "0:41"})
    await redis.hset(readers_key("m1"), mapping={"a.u1": "love|1700000000000", "a.u2": "|17"})
    await redis.hset(counts_key("m2"), mapping={"wow": 1, "@fence": "2:5"})
    await redis.hset(readers_key("m2"), mapping={"a.u1": "wow"})

    response = await http.get(
        "/v1/me/reactions", params={"ids": "m1,m2,m3,m1"}, headers=bearer(tokens.token("a.u1"))
    )
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "private, no-store"
    assert "Authorization" in response.headers["vary"]
    assert response.json() == {
        "reader_id": "a.u1",
        "articles": {
            "m1": {
                "mine": "love",
                "counts": {**ZEROS, "love": 2, "angry": 1},
                "total": 3,
                "seq": 41,
            },
            "m2": {"mine": "wow", "counts": {**ZEROS, "wow": 1}, "total": 1, "seq": 5},
            "m3": {"mine": None, "counts": ZEROS, "total": 0, "seq": -1},
        },
    }
    cleared = await http.get(
        "/v1/me/reactions", params={"ids": "m1"}, headers=bearer(tokens.token("a.u2"))
    )
    assert cleared.json()["articles"]["m1"]["mine"] is None
    # There is no parameter to name another reader: the token alone says who reads.
    assert_error(await http.get("/v1/me/reactions", params={"ids": "m1"}), 401, "missing_token")
    bad = await http.get("/v1/me/reactions?ids=m1", headers={"authorization": "Bearer x.y.z"})
    assert_error(bad, 401, "invalid_token")
    assert bad.headers["www-authenticate"].startswith('Bearer realm="reactions", error=')
    assert_error(
        await http.get(
            "/v1/me/reactions", params={"ids": ""}, headers=bearer(tokens.token("a.u1"))
        ),
        422,
        "invalid_ids",
    )
    metrics = (await http.get("/metrics")).text
    assert re.search(r"^reactions_reader_own_reads_total 2\.0$", metrics, re.M), metrics
