"""A news site's load on Reactions, for Locust: `locust -f bench/locustfile.py --host READER`.

Three kinds of users, as a news site has them:

- `PageReader`: opens a page as the widget loads it — `GET /v1/config`, one bulk read of
  the page's bars, a page stream (`GET /v1/stream?ids=`) for the bars in view held a while.
- `Voter`: gets a reader token (from `--tokens-file`, or `POST /v1/readers`), then votes,
  changes the vote and clears it (`POST /v1/votes`).
- `ViralSpike`: a crowd on one article (`--viral-article`): each votes there and watches
  its tally on a stream.

`--host` is the reader's (or the edge's) URL, `--ingest-url` ingest's (default: the same
host, as behind the edge). New identities are limited per client network (20 an hour by
default), so a load test from a few machines reads tokens minted offline with the
deployment's key: `python -m services.ingest mint-tokens --count N --out tokens.tsv`,
then `--tokens-file tokens.tsv` (one reader per line, `reader_id<TAB>token`). Each request
is named by its route, so Locust's table groups them; a stream counts as failed when it
does not open with 200 or carries no `event: tally` within its hold.
"""

from __future__ import annotations

import contextlib
import itertools
import random
import threading
import time
from pathlib import Path
from typing import Any, ClassVar

import requests
from locust import HttpUser, between, events, task
from locust.env import Environment

REACTIONS = ("like", "dislike", "love", "funny", "angry", "sad", "wow")


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    parser.add_argument("--ingest-url", default="", help="ingest base URL (default: --host)")
    parser.add_argument(
        "--tokens-file", default="", help="reader tokens, `reader_id<TAB>token` lines"
    )
    parser.add_argument("--articles", type=int, default=1000, help="articles voted and read")
    parser.add_argument("--article-prefix", default="load-a", help="article ids: PREFIX0, ...")
    parser.add_argument("--page-size", type=int, default=20, help="bars on a page")
    parser.add_argument("--in-view", type=int, default=8, help="bars in view: streamed")
    parser.add_argument("--stream-hold", type=float, default=3.0, help="seconds a stream stays")
    parser.add_argument("--viral-article", default="load-viral", help="the spike's article")


class Tokens:
    """Reader tokens handed out one per user: from the file (each line once, then again
    from the top), else none and users ask ingest for one."""

    _lock = threading.Lock()
    _tokens: ClassVar[list[str]] = []
    _next: ClassVar[itertools.count[int]] = itertools.count()

    @classmethod
    def load(cls, path: str) -> None:
        """Read the file's tokens (nothing when `path` is empty)."""
        if not path:
            return
        tokens = []
        for line in Path(path).read_text().splitlines():
            _, sep, token = line.strip().partition("\t")
            if sep and token:
                tokens.append(token)
        if not tokens:
            raise SystemExit(f"{path}: no `reader_id<TAB>token` lines")
        cls._tokens = tokens

    @classmethod
    def take(cls) -> str | None:
        """The next token of the file, or None without one."""
        if not cls._tokens:
            return None
        with cls._lock:
            return cls._tokens[next(cls._next) % len(cls._tokens)]


@events.init.add_listener
def _init(environment: Environment, **_: Any) -> None:
    options = environment.parsed_options
    if options is not None:
        Tokens.load(options.tokens_file)


class SiteUser(HttpUser):
    """What every user here shares: the options, the two base URLs, article ids."""

    abstract = True

    def on_start(self) -> None:
        options = self.environment.parsed_options
        assert options is not None
        self.options = options
        self.reader_url = (self.host or "").rstrip("/")
        self.ingest_url = (options.ingest_url or self.reader_url).rstrip("/")
        self.token: str | None = None

    def article(self) -> str:
        return f"{self.options.article_prefix}{random.randrange(self.options.articles)}"

    def reader_token(self) -> str:
        """This user's token: from the file, else a new reader from ingest."""
        if self.token is None:
            self.token = Tokens.take()
        if self.token is None:
            with self.client.post(
                f"{self.ingest_url}/v1/readers", name="POST /v1/readers", catch_response=True
            ) as answer:
                if answer.status_code != 201:
                    answer.failure(f"status {answer.status_code}: {answer.text[:200]}")
                    raise _Skip()
                self.token = str(answer.json()["token"])
        return self.token

    def vote(self, article: str, reaction: str | None, name: str) -> None:
        """One vote (None clears), 202 expected."""
        body = {"article_id": article, "reaction": reaction, "client_ts": int(time.time() * 1000)}
        headers = {"Authorization": f"Bearer {self.reader_token()}"}
        with self.client.post(
            f"{self.ingest_url}/v1/votes",
            json=body,
            headers=headers,
            name=name,
            catch_response=True,
        ) as answer:
            if answer.status_code != 202:
                answer.failure(f"status {answer.status_code}: {answer.text[:200]}")

    def stream(self, ids: list[str], name: str) -> None:
        """Hold a page stream for `--stream-hold` seconds; it must carry a tally."""
        url = f"{self.reader_url}/v1/stream?ids={','.join(ids)}"
        hold = self.options.stream_hold
        # A quiet stream sends nothing between changes: the read timeout ends the hold.
        with self.client.get(
            url, name=name, stream=True, catch_response=True, timeout=(10, hold)
        ) as answer:
            if answer.status_code != 200:
                answer.failure(f"status {answer.status_code}")
                return
            deadline = time.monotonic() + hold
            seen = False
            # The stream sends a snapshot first, then changes; read until the hold ends.
            with contextlib.suppress(requests.exceptions.RequestException):
                for line in answer.iter_lines(chunk_size=None):
                    seen = seen or line.startswith(b"event: tally")
                    if seen and time.monotonic() >= deadline:
                        break
            if not seen:
                answer.failure("no `event: tally` on the stream")


class _Skip(Exception):
    """The user cannot go on with this task (no token): Locust moves to the next."""


class PageReader(SiteUser):
    """Opens pages: the widget's config, one bulk read, a stream of the bars in view."""

    weight = 6
    wait_time = between(0.5, 2)

    @task
    def open_page(self) -> None:
        page = sorted({self.article() for _ in range(self.options.page_size)})
        self.client.get(f"{self.reader_url}/v1/config", name="GET /v1/config")
        self.client.get(
            f"{self.reader_url}/v1/reactions?ids={','.join(page)}", name="GET /v1/reactions"
        )
        self.stream(page[: self.options.in_view], "GET /v1/stream (page)")


class Voter(SiteUser):
    """A reader voting on articles: a vote, a change of mind, now and then a clear."""

    weight = 3
    wait_time = between(0.5, 2)

    @task
    def vote_change_clear(self) -> None:
        article = self.article()
        first, second = random.sample(REACTIONS, 2)
        try:
            self.vote(article, first, "POST /v1/votes (set)")
            self.vote(article, second, "POST /v1/votes (change)")
            if random.random() < 0.3:
                self.vote(article, None, "POST /v1/votes (clear)")
        except _Skip:
            return


class ViralSpike(SiteUser):
    """The crowd on one viral article: each votes there and watches its tally move."""

    weight = 1
    wait_time = between(0.1, 0.5)

    @task
    def pile_on(self) -> None:
        viral = self.options.viral_article
        try:
            self.vote(viral, random.choice(REACTIONS), "POST /v1/votes (viral)")
        except _Skip:
            return
        self.stream([viral], "GET /v1/stream (viral)")
