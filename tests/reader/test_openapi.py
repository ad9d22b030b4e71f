"""Schemathesis against the reader's /openapi.json, as an operator would run it (`st run URL
--checks all`, examples, coverage and fuzzing, a valid reader token in a header): no 5xx,
every answer as documented, nothing documented that the service refuses, and the own-votes
read refuses a request without the token."""

from __future__ import annotations

from pathlib import Path

from redis.asyncio import Redis

from deploy.local.client import MintedTokens
from shared.tallies import counts_key, readers_key
from tests.support import ServiceFactory, run_schemathesis


async def test_reader_conforms_to_its_openapi_document(
    start_service: ServiceFactory, tokens: MintedTokens, redis: Redis, tmp_path: Path
) -> None:
    await redis.hset(counts_key("story-1"), mapping={"love": 2, "@fence": "0:9"})
    await redis.hset(readers_key("story-1"), "a.schemathesis", "love")
    reader = start_service(
        "reader",
        # Short streams: the fuzzer opens SSE streams too, and each must end by itself.
        env={"REACTIONS_SSE_MAX_LIFETIME_S": "0.5", "REACTIONS_SSE_KEEPALIVE_S": "0.2"},
    )
    result = run_schemathesis(reader.url, tokens.token("a.schemathesis"), tmp_path, max_examples=60)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
