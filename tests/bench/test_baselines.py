"""The baselines do the work they stand for: same per-event Redis work, valid wrk traffic,
ingest without token verification and nothing else taken out."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from importlib import resources
from pathlib import Path

import httpx
import orjson
from redis.asyncio import Redis

from bench.scenarios import trending
from bench.stack import AppProcess
from bench.wrk import run_wrk
from deploy.local.kafka import KafkaBroker
from deploy.local.keys import DevelopmentKeys
from deploy.local.process import ROOT, free_port
from deploy.local.redis import RedisServer
from deploy.local.services import UNLIMITED_RATES
from services.aggregator.scripts import apply_event_line, apply_keys, apply_script
from services.ingest.tokens import minted, write_tokens
from services.reader.trending import MAX_LIMIT, Trending
from shared.tallies import TREND_ROLLUPS_SINCE_KEY, counts_key, readers_key
from tests.support import ServiceFactory, assert_error, metric_sum, read_topic

VOTES = [("u1", "love"), ("u2", "like"), ("u1", "wow"), ("u3", "love"), ("u2", "love")]


async def test_per_event_lua_moves_votes_like_the_apply_script(redis: Redis) -> None:
    apply = apply_script(redis)
    lines = "".join(
        apply_event_line(offset, user, reaction, None)
        for offset, (user, reaction) in enumerate(VOTES)
    )
    await apply(keys=list(apply_keys("real")), args=[0, lines, "", "1:test"])

    source = resources.files("bench").joinpath("baselines/per_event.lua").read_text()
    per_event = redis.register_script(source)
    for user, reaction in VOTES:
        await per_event(keys=[counts_key("lua"), readers_key("lua")], args=[user, reaction])

    real = await redis.hgetall(counts_key("real"))
    lua = await redis.hgetall(counts_key("lua"))
    real.pop("@fence")
    lua.pop("@fence", None)
    assert {k: int(v) for k, v in lua.items() if int(v)} == {
        k: int(v) for k, v in real.items() if int(v)
    }
    assert await redis.hgetall(readers_key("lua")) == await redis.hgetall(readers_key("real"))


def test_the_wrk_scripts_send_only_votes_ingest_accepts(
    start_service: ServiceFactory, token_keys: DevelopmentKeys, tmp_path: Path
) -> None:
    tokens = tmp_path / "tokens.tsv"
    write_tokens(minted(token_keys.issuer(), 200, "a.wrk-", None), tokens)
    # As the scripts say: raise the limits first, wrk is one address with few readers.
    ingest = start_service("ingest", env=UNLIMITED_RATES)
    result = run_wrk(
        ingest.url, "put", [str(tokens), "50", "wrk-a"], duration_s=1, connections=2, timeout_s=10
    )
    assert result.requests > 0
    walked = run_wrk(
        ingest.url, "walk", [str(tokens), "7", "50", "wrk-a"], duration_s=1, connections=2
    )
    assert walked.requests > 0

    # The load-test script of the README, run as documented.
    wrk = shutil.which("wrk")
    assert wrk, "wrk is not installed: run `make setup`"
    script = ROOT / "tests" / "ingest" / "wrk_put.lua"
    documented = subprocess.run(
        [wrk, "-t1", "-c2", "-d1s", "-s", str(script), ingest.url, "--", str(tokens)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert documented.returncode == 0, documented.stderr
    assert "requests in" in documented.stdout, documented.stdout

    # Every vote the scripts sent was one ingest takes: no 4xx. (A 503 on a busy machine
    # is Kafka answering late, not a bad request, so the check is on 4xx.) wrk stops at its
    # deadline mid-request, and a body cut off that way is answered 400 incomplete_body:
    # at most one per connection, two connections per run, three runs.
    text = httpx.get(f"{ingest.url}/metrics", timeout=10).text
    answered = {
        status: metric_sum(
            text, "reactions_http_requests_total", {"route": "/v1/votes", "status": status}
        )
        for status in ("202", "400", "401", "403", "404", "405", "410", "413", "415", "422", "429")
    }
    assert answered["202"] >= (result.requests + walked.requests) / 2, answered
    assert answered.pop("400") <= 6, answered
    refused = {status: n for status, n in answered.items() if status != "202" and n}
    assert not refused, refused


async def test_the_trending_baseline_merges_the_same_day_from_minute_buckets(
    redis_server: RedisServer,
) -> None:
    url = f"redis://127.0.0.1:{redis_server.port}/{trending.TRENDING_DB}"
    day = await asyncio.to_thread(trending.load, url, votes_per_minute=30)
    client = Redis.from_url(url)
    try:
        tops = []
        # The scenario's two ways: rollups whole since the day began, and no rollups marker.
        for since in (day.first_minute, None):
            if since is None:
                await client.delete(TREND_ROLLUPS_SINCE_KEY)
            else:
                await client.set(TREND_ROLLUPS_SINCE_KEY, since)
            tops.append(await Trending(client, ttl=0).top("all", "24h", MAX_LIMIT))
        await client.flushdb()
    finally:
        await client.aclose()
    assert len(tops[0]) == MAX_LIMIT
    assert tops[0] == tops[1], "both ways rank the same day the same"


def test_new_readers_vote_with_the_token_ingest_gave_them_and_pay_no_check(
    start_service: ServiceFactory,
) -> None:
    """The verify scenario's new readers (newcomers.lua): a token from ingest, then three
    votes with it, none refused, and none of them a signature check."""
    ingest = start_service("ingest", env=UNLIMITED_RATES)
    result = run_wrk(ingest.url, "newcomers", ["3", "50", "wrk-n"], duration_s=2, connections=4)
    assert result.requests > 0
    text = httpx.get(f"{ingest.url}/metrics", timeout=10).text
    issued = metric_sum(text, "reactions_ingest_tokens_issued_total", {"kind": "new"})
    votes = metric_sum(text, "reactions_http_requests_total", {"route": "/v1/votes"})
    accepted = metric_sum(
        text, "reactions_http_requests_total", {"route": "/v1/votes", "status": "202"}
    )
    # Three votes per token, but for the tokens of the last moment (one per connection) and
    # a vote cut off by wrk's deadline (at most one per connection, answered 400).
    assert issued > 4
    assert 3 * (issued - 4) <= votes <= 3 * issued, (issued, votes)
    assert accepted >= votes - 4, (accepted, votes)
    assert metric_sum(text, "reactions_token_rejections_total") == 0
    assert metric_sum(text, "reactions_token_checks_total") == 0


async def test_the_unverified_baseline_is_ingest_taking_the_tokens_sub_unchecked(
    stack_env: dict[str, str],
    token_keys: DevelopmentKeys,
    kafka: KafkaBroker,
    topic: str,
    tmp_path: Path,
) -> None:
    baseline = AppProcess("unverified_ingest", free_port(), tmp_path, stack_env)
    baseline.start()
    try:
        token = token_keys.issuer().issue("a.trusted").token
        forged = token.rsplit(".", 1)[0] + ".c2lnbmF0dXJl"  # a signature that cannot verify
        async with httpx.AsyncClient(base_url=baseline.url, timeout=30) as http:
            for sent in (token, forged):
                vote = await http.post(
                    "/v1/votes",
                    json={"article_id": "a1", "reaction": "like"},
                    headers={"authorization": f"Bearer {sent}"},
                )
                assert vote.status_code == 202, vote.text
                assert vote.json()["reader_id"] == "a.trusted"
            junk = await http.post(
                "/v1/votes",
                json={"article_id": "a1", "reaction": "like"},
                headers={"authorization": "Bearer not-a-jwt"},
            )
            assert_error(junk, 401, "invalid_token")
    finally:
        baseline.stop()
    # The rest of the write path is ingest's own: both votes were published to its topic.
    records = await read_topic(kafka.bootstrap, topic, at_least=2)
    assert [orjson.loads(r.value or b"{}")["user_id"] for r in records] == ["a.trusted"] * 2
