"""The public API as a client uses it: get a reader token, vote, read tallies and one's own
votes.

Tests, the fault harness and the bench send votes and read tallies through here, so a
change of the API's URLs or of how a reader authenticates is made in this one module.
`VoteApi` builds the requests for any HTTP client (the bench sends them with aiohttp);
`VoteClient` and `SyncVoteClient` send them with httpx and return the raw responses, for
callers that check the status. A vote names its reader by the reader's token; a
`TokenSource` hands out the token of a reader id: minted with the signing key
(`MintedTokens`, for tests and the bench's own stack) or read from a file of tokens minted
offline (`TokenFile`, `python -m services.ingest mint-tokens`). A browser gets its token
from `POST /v1/readers` (`new_reader`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Protocol
from urllib.parse import urlencode

import httpx
import orjson

from services.ingest.tokens import TokenIssuer

JSON = {"content-type": "application/json"}


class TokenSource(Protocol):
    """Hands out the token of a reader id."""

    def token(self, reader: str) -> str:
        """The token that names `reader`."""
        ...


class MintedTokens:
    """Tokens signed on demand with the signing key, for any reader id (a./s./h.)."""

    def __init__(self, issuer: TokenIssuer) -> None:
        self.issuer = issuer
        self._tokens: dict[str, str] = {}

    def token(self, reader: str) -> str:
        """The token of `reader`, minted once."""
        token = self._tokens.get(reader)
        if token is None:
            token = self._tokens[reader] = self.issuer.issue(reader).token
        return token


class TokenFile:
    """Tokens read from a file of `reader_id<TAB>token` lines, in the file's order."""

    def __init__(self, path: Path) -> None:
        self.tokens: dict[str, str] = {}
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            reader, sep, token = line.strip().partition("\t")
            if not sep or not token:
                raise ValueError(f"{path}:{number}: expected 'reader_id<TAB>token'")
            self.tokens[reader] = token
        if not self.tokens:
            raise ValueError(f"{path} holds no tokens")

    @property
    def readers(self) -> list[str]:
        """The reader ids of the file, in its order."""
        return list(self.tokens)

    def token(self, reader: str) -> str:
        """The token of `reader`; KeyError if the file has none."""
        return self.tokens[reader]


@dataclass(frozen=True)
class ApiRequest:
    """One request of the public API, whichever HTTP client sends it."""

    method: str
    url: str
    body: bytes | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


def bearer(token: str) -> dict[str, str]:
    """The Authorization header carrying `token`."""
    return {"authorization": f"Bearer {token}"}


class VoteApi:
    """The requests that get a token, vote and read, on ingest's and the reader's URLs."""

    def __init__(self, ingest_url: str = "", reader_url: str = "") -> None:
        self.ingest_url = ingest_url.rstrip("/")
        self.reader_url = reader_url.rstrip("/")

    @property
    def votes_url(self) -> str:
        """Where every vote is sent (one URL, so one CORS preflight covers them all)."""
        return f"{self.ingest_url}/v1/votes"

    def vote(
        self, token: str, article: str, reaction: str | None, client_ts: int | None = None
    ) -> ApiRequest:
        """Set the token's reader's reaction to `article` (None clears it)."""
        body: dict[str, str | int | None] = {"article_id": article, "reaction": reaction}
        if client_ts is not None:
            body["client_ts"] = client_ts
        headers = {**JSON, **bearer(token)}
        return ApiRequest("POST", self.votes_url, orjson.dumps(body), headers)

    def new_reader(self, token: str | None = None) -> ApiRequest:
        """A new anonymous reader token, or with `token` the renewal of that reader's."""
        return ApiRequest(
            "POST", f"{self.ingest_url}/v1/readers", None, bearer(token) if token else {}
        )

    def tally(self, article: str) -> ApiRequest:
        """The public tally of one article."""
        return ApiRequest("GET", f"{self.reader_url}/v1/articles/{article}/reactions")

    def tallies(self, ids: Iterable[str]) -> ApiRequest:
        """The public tallies of several articles in one request."""
        return ApiRequest("GET", _url(f"{self.reader_url}/v1/reactions", {"ids": ",".join(ids)}))

    def trending(self, reaction: str, window: str, limit: int = 10) -> ApiRequest:
        """The articles with the most net reactions of a type (or `all`) in a window."""
        params = {"reaction": reaction, "window": window, "limit": str(limit)}
        return ApiRequest("GET", _url(f"{self.reader_url}/v1/trending", params))

    def mine(self, token: str, ids: Iterable[str]) -> ApiRequest:
        """The token's reader's own reactions with the tallies, read together."""
        url = _url(f"{self.reader_url}/v1/me/reactions", {"ids": ",".join(ids)})
        return ApiRequest("GET", url, None, bearer(token))


def _url(base: str, query: Mapping[str, str]) -> str:
    return f"{base}?{urlencode(query, safe=',')}" if query else base


class _Requests:
    """The requests both clients send, with tokens from their source."""

    def __init__(self, ingest_url: str, reader_url: str, tokens: TokenSource | None) -> None:
        self.api = VoteApi(ingest_url, reader_url)
        self.tokens = tokens

    def token(self, reader: str) -> str:
        if self.tokens is None:
            raise RuntimeError("this client has no token source: pass tokens=")
        return self.tokens.token(reader)

    def set(self, article: str, reader: str, reaction: str, client_ts: int | None) -> ApiRequest:
        return self.api.vote(self.token(reader), article, reaction, client_ts)

    def clear(self, article: str, reader: str, client_ts: int | None) -> ApiRequest:
        return self.api.vote(self.token(reader), article, None, client_ts)


class VoteClient:
    """`VoteApi` sent with an httpx.AsyncClient: its own, or `http` (left open)."""

    def __init__(
        self,
        ingest_url: str = "",
        reader_url: str = "",
        *,
        tokens: TokenSource | None = None,
        http: httpx.AsyncClient | None = None,
        timeout: float = 10.0,
    ) -> None:
        self._requests = _Requests(ingest_url, reader_url, tokens)
        self.api = self._requests.api
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
        reader: str,
        reaction: str,
        client_ts: int | None = None,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """Set `reader`'s reaction to `article`, with `reader`'s token."""
        return await self.send(self._requests.set(article, reader, reaction, client_ts), headers)

    async def clear(
        self,
        article: str,
        reader: str,
        client_ts: int | None = None,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """Clear `reader`'s reaction to `article`."""
        return await self.send(self._requests.clear(article, reader, client_ts), headers)

    async def vote(
        self,
        token: str,
        article: str,
        reaction: str | None,
        client_ts: int | None = None,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """Vote with a token of the caller's choosing (None clears)."""
        return await self.send(self.api.vote(token, article, reaction, client_ts), headers)

    async def new_reader(
        self, token: str | None = None, *, headers: Mapping[str, str] | None = None
    ) -> httpx.Response:
        """`POST /v1/readers`: a new anonymous reader, or the renewal of `token`."""
        return await self.send(self.api.new_reader(token), headers)

    async def tally(self, article: str) -> httpx.Response:
        """The public tally of one article."""
        return await self.send(self.api.tally(article))

    async def tallies(self, ids: Iterable[str]) -> httpx.Response:
        """The public tallies of several articles."""
        return await self.send(self.api.tallies(ids))

    async def mine(self, ids: Iterable[str], reader: str) -> httpx.Response:
        """`reader`'s own reactions on `ids` with their tallies."""
        return await self.send(self.api.mine(self._requests.token(reader), ids))

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
        tokens: TokenSource | None = None,
        http: httpx.Client | None = None,
        timeout: float = 10.0,
    ) -> None:
        self._requests = _Requests(ingest_url, reader_url, tokens)
        self.api = self._requests.api
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
        self, article: str, reader: str, reaction: str, client_ts: int | None = None
    ) -> httpx.Response:
        """Set `reader`'s reaction to `article`, with `reader`'s token."""
        return self.send(self._requests.set(article, reader, reaction, client_ts))

    def clear(self, article: str, reader: str, client_ts: int | None = None) -> httpx.Response:
        """Clear `reader`'s reaction to `article`."""
        return self.send(self._requests.clear(article, reader, client_ts))

    def new_reader(self, token: str | None = None) -> httpx.Response:
        """`POST /v1/readers`: a new anonymous reader, or the renewal of `token`."""
        return self.send(self.api.new_reader(token))

    def tally(self, article: str) -> httpx.Response:
        """The public tally of one article."""
        return self.send(self.api.tally(article))

    def tallies(self, ids: Iterable[str]) -> httpx.Response:
        """The public tallies of several articles."""
        return self.send(self.api.tallies(ids))

    def mine(self, ids: Iterable[str], reader: str) -> httpx.Response:
        """`reader`'s own reactions on `ids` with their tallies."""
        return self.send(self.api.mine(self._requests.token(reader), ids))

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
