"""Traffic for the fault tests: a bounded load of votes against ingest that records every
request's outcome, for the oracle to check against the topic and Redis."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from dataclasses import dataclass

import httpx

from deploy.local.client import TokenSource, VoteClient
from shared.reactions import DEFAULT_TYPES

REACTIONS = tuple(DEFAULT_TYPES)

# A signature identifies what a request asked for, so a record that no 202 explains can be
# matched to a request whose outcome the client never learnt.
Signature = tuple[str, str, str, str | None, int | None]


@dataclass
class Outcome:
    """One request the traffic sent and what came back (status None: outcome unknown)."""

    op: str
    article_id: str
    user_id: str
    reaction: str | None
    client_ts: int | None
    started: float
    status: int | None = None
    event_id: str | None = None
    retry_after: str | None = None
    error: str | None = None
    code: str | None = None

    @property
    def accepted(self) -> bool:
        return self.status == 202

    @property
    def rejected(self) -> bool:
        return self.status is not None and not 200 <= self.status < 300 and not self.indeterminate

    @property
    def indeterminate(self) -> bool:
        # No answer, or ingest's own word that Kafka may still take the event (its ack did
        # not come back in time): either way it may or may not be in the topic.
        return self.status is None or self.code == "publish_timeout"

    def signature(self) -> Signature:
        return (self.article_id, self.user_id, self.op, self.reaction, self.client_ts)


class Traffic:
    """A bounded load of votes (sets and clears) against ingest, recording every outcome.

    `workers` concurrent loops each send one request at a time over `articles` x `readers`,
    each reader with its token from `tokens`; a share of the sets carries a random
    `client_ts`, so some arrive stale.
    """

    def __init__(
        self,
        ingest_url: str,
        *,
        tokens: TokenSource,
        articles: int = 200,
        readers: int = 300,
        workers: int = 6,
        client_ts_share: float = 0.3,
        seed: int | None = None,
        prefix: str = "a",
        timeout: float = 30.0,
    ) -> None:
        self.ingest_url = ingest_url
        self.tokens = tokens
        self.articles = [f"{prefix}-{i}" for i in range(articles)]
        self.readers = [f"a.r{i}" for i in range(readers)]
        self.workers = workers
        self.client_ts_share = client_ts_share
        self.random = random.Random(seed)
        self.timeout = timeout
        self.outcomes: list[Outcome] = []
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._client: httpx.AsyncClient | None = None
        self._votes: VoteClient | None = None

    def _next_request(self) -> Outcome:
        rnd = self.random
        # A skewed choice of article: a few hot stories take most clicks, like a front page.
        article = self.articles[min(int(rnd.paretovariate(1.2)) - 1, len(self.articles) - 1)]
        if rnd.random() < 0.3:
            article = rnd.choice(self.articles)
        user = rnd.choice(self.readers)
        if rnd.random() < 0.25:
            return Outcome("clear", article, user, None, None, time.monotonic())
        client_ts = (
            1_700_000_000_000 + rnd.randrange(1_000_000)
            if rnd.random() < self.client_ts_share
            else None
        )
        return Outcome("set", article, user, rnd.choice(REACTIONS), client_ts, time.monotonic())

    async def send(self, outcome: Outcome) -> Outcome:
        """Send one request, record its outcome and return it."""
        assert self._votes is not None, "start() the traffic first"
        self.outcomes.append(outcome)
        try:
            if outcome.op == "set":
                assert outcome.reaction is not None
                response = await self._votes.set(
                    outcome.article_id, outcome.user_id, outcome.reaction, outcome.client_ts
                )
            else:
                response = await self._votes.clear(outcome.article_id, outcome.user_id)
        except httpx.HTTPError as exc:
            outcome.error = repr(exc)
            return outcome
        outcome.status = response.status_code
        outcome.retry_after = response.headers.get("retry-after")
        if response.status_code == 202:
            outcome.event_id = response.json()["event_id"]
        elif response.headers.get("content-type", "").startswith("application/json"):
            outcome.code = response.json().get("error", {}).get("code")
        return outcome

    async def _worker(self) -> None:
        while not self._stop.is_set():
            outcome = await self.send(self._next_request())
            if outcome.status is None or outcome.status >= 500:
                # Back off a little from a failing ingest, as a browser would.
                await asyncio.sleep(0.05)

    async def start(self) -> Traffic:
        """Open the client and start the worker loops."""
        self._client = httpx.AsyncClient(
            timeout=self.timeout, limits=httpx.Limits(max_connections=self.workers)
        )
        self._votes = VoteClient(self.ingest_url, http=self._client, tokens=self.tokens)
        self._stop.clear()
        self._tasks = [asyncio.create_task(self._worker()) for _ in range(self.workers)]
        return self

    async def stop(self) -> None:
        """Let every in-flight request finish, then close the client; safe to call twice."""
        self._stop.set()
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            await task
        if self._client is not None:
            client, self._client, self._votes = self._client, None, None
            await client.aclose()

    async def __aenter__(self) -> Traffic:
        return await self.start()

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    def count(self, *, status: int | None = None, since: float = 0.0) -> int:
        """How many outcomes have `status` (any when None) among requests started after `since`."""
        return sum(
            1
            for o in self.outcomes
            if o.started >= since and (status is None or o.status == status)
        )

    def statuses(self) -> Counter[int | None]:
        """How many requests got each status (None: outcome unknown)."""
        return Counter(o.status for o in self.outcomes)


async def wait_for_outcomes(
    traffic: Traffic,
    at_least: int,
    *,
    status: int | None = 202,
    since: float = 0.0,
    timeout: float = 60.0,  # noqa: ASYNC109 - a deadline for polling
) -> None:
    """Wait until `at_least` requests started after `since` got `status`."""
    deadline = time.monotonic() + timeout
    while traffic.count(status=status, since=since) < at_least:
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout}s waiting for {at_least} answers {status}; "
                f"seen {traffic.count(status=status, since=since)}; all: {traffic.statuses()}"
            )
        await asyncio.sleep(0.05)
