"""Redis lost its data and the log is being replayed into it: the reader answers 503
`rebuilding` to every count read. In Chromium: a page opened meanwhile says the reactions
are unavailable (never a zero), and shows them by itself once the replay ends; a page open
through it keeps what it shows and gets the votes cast meanwhile once it ends."""

from __future__ import annotations

from playwright.sync_api import Browser, expect
from redis import Redis

from deploy.local.client import MintedTokens, SyncVoteClient
from deploy.local.redis import RedisServer
from shared.tallies import counts_key, replay_key
from tests.e2e.bars import Stack, expect_state, seed, wait_in_page, widget_script
from tests.e2e.site import NewsSite


def test_pages_wait_out_a_rebuild_of_the_view(
    browser: Browser, stack: Stack, site: NewsSite, redis_server: RedisServer, tokens: MintedTokens
) -> None:
    article = "w-rebuild"
    bar = f'<reaction-bar article="{article}"></reaction-bar>'
    seed(redis_server.url, article, {"love": 4})
    redis = Redis.from_url(redis_server.url, decode_responses=True)
    # A replay target on a partition no aggregator owns: the reader answers 503 rebuilding
    # until the test ends the "replay" (the stack's aggregator keeps applying votes).
    target = (replay_key(stack.topic), "999")
    with browser.new_context() as before_ctx, browser.new_context() as during_ctx:
        streams: list[int] = []  # the status of each stream the page opens
        before_ctx.on("response", lambda r: "/v1/stream?" in r.url and streams.append(r.status))
        before = site.open(before_ctx, bar, widget_script(stack))
        expect_state(before, article, "Love", pressed=False, count="4")
        wait_in_page(before, lambda: streams == [200], what="the page's stream")
        redis.hset(*target, 1)
        try:
            with SyncVoteClient(stack.ingest.url, stack.reader.url, tokens=tokens) as votes:
                assert votes.set(article, "a.rebuild-other", "love").status_code == 202
            wait_in_page(
                before,
                lambda: redis.hget(counts_key(article), "love") == "5",
                what="the vote applied",
            )
            during = site.open(during_ctx, bar, widget_script(stack))
            status = during.locator(f'reaction-bar[article="{article}"]').get_by_role("status")
            expect(status).to_contain_text("unavailable")
            expect(during.get_by_role("button")).to_have_count(0)  # no count, no zero
            expect_state(before, article, "Love", pressed=False, count="4")
        finally:
            redis.hdel(*target)
            redis.close()
        expect_state(during, article, "Love", pressed=False, count="5")
        expect_state(before, article, "Love", pressed=False, count="5")
        assert streams == [200], "the page's stream stays open through the rebuild"
