"""The public API as a client uses it: send a vote, clear it, read tallies.

Tests, the fault harness and the bench send votes and read tallies through here, so a
change of the API's URLs or of how a reader authenticates is made in this one module.
`VoteApi` builds the requests for any HTTP client (the bench sends them with aiohttp);
`VoteClient` and `SyncVoteClient` send them with httpx and return the raw responses, for
callers that check the status.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from urllib.parse import urlencode

import httpx
import orjson

JSON = {"content-type": "application/json"}


@dataclass(frozen=True)
class ApiRequest:
    """One request of the public API, whichever HTTP client sends it."""

    method: str
    url: str
    body: bytes | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


class VoteApi:
    """The requests that set, clear and read reactions, on ingest's and the reader's URLs."""

    def __init__(self, ingest_url: str = "", reader_url: str = "") -> None:
        self.ingest_url = ingest_url.rstrip("/")
        self.reader_url = reader_url.rstrip("/")

    def vote_url(self, article: str, user: str) -> str:
        """Where `user`'s reaction to `article` is written."""
        return f"{self.ingest_url}/v1/articles/{article}/reactions/{user}"

    def set(
        self, article: str, user: str, reaction: str, client_ts: int | None = None
    ) -> ApiRequest:
        """Set `user`'s reaction to `article`; `client_ts` orders it against the others."""
        body: dict[str, str | int] = {"reaction": reaction}
        if client_ts is not None:
            body["client_ts"] = client_ts
        return ApiRequest("PUT", self.vote_url(article, user), orjson.dumps(body), JSON)

    def clear(self, article: str, user: str) -> ApiRequest:
        """Clear `user`'s reaction to `article`."""
        return ApiRequest("DELETE", self.vote_url(article, user))

    def tally(self, article: str, user: str | None = None) -> ApiRequest:
        """The tally of one article, with `user`'s own reaction when given."""
        query = {"user_id": user} if user is not None else {}
        return ApiRequest("GET", _url(f"{self.reader_url}/v1/articles/{article}/reactions", query))

    def tallies(self, ids: Iterable[str], user: str | None = None) -> ApiRequest:
        """The tallies of several articles in one request."""
        query = {"ids": ",".join(ids), **({"user_id": user} if user is not None else {})}
        return ApiRequest("GET", _url(f"{self.reader_url}/v1/reactions", query))


def _url(base: str, query: Mapping[str, str]) -> str:
    return f"{base}?{urlencode(query, safe=',')}" if query else base


class VoteClient:
    """`VoteApi` sent with an httpx.AsyncClient: its own, or `http` (left open)."""

    def __init__(
        self,
        ingest_url: str = "",
        reader_url: str = "",
        *,
        http: httpx.AsyncClient | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.api = VoteApi(ingest_url, reader_url)
        self._owns_http = http is None
        self.http = http or httpx.AsyncClient(timeout=timeout)

    async def send(
        self, request: ApiRequest, headers: Mapping[str, str] | None = None
    ) -> httpx.Response:
        """Send one request, with extra `headers`."""
        return await self.http.request(
            request.method,
            request.url,
            content=request.body,
            headers={**request.headers, **(headers or {})},
        )

    async def set(
        self,
        article: str,
        user: str,
        reaction: str,
        client_ts: int | None = None,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """Set `user`'s reaction to `article`."""
        return await self.send(self.api.set(article, user, reaction, client_ts), headers)

    async def clear(
        self, article: str, user: str, *, headers: Mapping[str, str] | None = None
    ) -> httpx.Response:
        """Clear `user`'s reaction to `article`."""
        return await self.send(self.api.clear(article, user), headers)

    async def tally(self, article: str, user: str | None = None) -> httpx.Response:
        """The tally of one article."""
        return await self.send(self.api.tally(article, user))

    async def tallies(self, ids: Iterable[str], user: str | None = None) -> httpx.Response:
        """The tallies of several articles."""
        return await self.send(self.api.tallies(ids, user))

    async def aclose(self) -> None:
        """Close the HTTP client if it is this client's own."""
        if self._owns_http:
            await self.http.aclose()

    async def __aenter__(self) -> VoteClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


class SyncVoteClient:
    """`VoteApi` sent with an httpx.Client: its own, or `http` (left open)."""

    def __init__(
        self,
        ingest_url: str = "",
        reader_url: str = "",
        *,
        http: httpx.Client | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.api = VoteApi(ingest_url, reader_url)
        self._owns_http = http is None
        self.http = http or httpx.Client(timeout=timeout)

    def send(self, request: ApiRequest, headers: Mapping[str, str] | None = None) -> httpx.Response:
        """Send one request, with extra `headers`."""
        return self.http.request(
            request.method,
            request.url,
            content=request.body,
            headers={**request.headers, **(headers or {})},
        )

    def set(
        self, article: str, user: str, reaction: str, client_ts: int | None = None
    ) -> httpx.Response:
        """Set `user`'s reaction to `article`."""
        return self.send(self.api.set(article, user, reaction, client_ts))

    def clear(self, article: str, user: str) -> httpx.Response:
        """Clear `user`'s reaction to `article`."""
        return self.send(self.api.clear(article, user))

    def tally(self, article: str, user: str | None = None) -> httpx.Response:
        """The tally of one article."""
        return self.send(self.api.tally(article, user))

    def tallies(self, ids: Iterable[str], user: str | None = None) -> httpx.Response:
        """The tallies of several articles."""
        return self.send(self.api.tallies(ids, user))

    def close(self) -> None:
        """Close the HTTP client if it is this client's own."""
        if self._owns_http:
            self.http.close()

    def __enter__(self) -> SyncVoteClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
