"""The open-loop generator against the real pipeline: every accepted vote is seen."""

from __future__ import annotations

import pytest

from bench.latency import open_loop, summary_ms
from deploy.local.client import MintedTokens
from deploy.local.services import Service


async def test_every_accepted_vote_is_seen_and_recorded(
    pipeline: tuple[Service, Service], tokens: MintedTokens
) -> None:
    ingest, reader = pipeline
    readers = [tokens.token(f"a.open-loop-{i}") for i in range(10)]
    with pytest.raises(ValueError, match="need 10 readers"):
        await open_loop(
            ingest.url, reader.url, tokens=readers[:9], rate=20, duration_s=1.0, probe_articles=2
        )
    result = await open_loop(
        ingest.url,
        reader.url,
        tokens=readers,
        rate=20,
        duration_s=1.0,
        probe_articles=2,
        settle_timeout_s=60,
    )
    assert result.method in ("sse", "poll")
    assert result.sent == 20
    assert result.accepted == 20
    assert result.failed == 0
    assert result.unseen == 0
    # Coordinated-omission correction may add samples, never remove them.
    assert summary_ms(result.visible_hist)["count"] >= 20
    assert summary_ms(result.put_hist)["count"] == 20
