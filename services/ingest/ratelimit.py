"""Abuse controls of the write path: which network a client is on, and how often it may
write or get a new reader identity.

Limits are moving windows per client network (an IPv4 address, an IPv6 /64 by default) and
per reader id. They are counted in process memory by default (windows.py: each worker and
instance counts on its own, holding only the keys hit within the window) or in Redis with
the `limits` library when configured, so all instances share them. Networks are only ever
kept as a salted hash: neither Redis keys nor logs see a raw address.

Writes fail open: an unreachable limit store lets them through, since each vote is already
bound to a token and a reader votes once per article. Issuing a new identity fails
closed: it is what stuffing costs, so when the store cannot count it, nobody gets one.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import secrets
import time
from collections.abc import Callable
from typing import Final

from limits import RateLimitItem, parse
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string
from prometheus_client import Counter, Gauge
from starlette.types import Scope

from services.ingest.config import IngestSettings
from services.ingest.windows import MovingWindow
from shared.clients import IpNetwork, client_ip, client_network
from shared.http import ApiError
from shared.logs import get_logger

log = get_logger(__name__)

# A limit store slower than this is treated as down: writes go through (fail open).
STORE_TIMEOUT_S: Final = 0.5

RATE_LIMITED: Final = Counter(
    "reactions_ingest_rate_limited_total",
    "Writes refused with 429, by the limit that refused them (ip: the client network, or reader).",
    ["scope"],
)
ISSUANCE_REFUSED: Final = Counter(
    "reactions_ingest_issuance_refused_total",
    "New reader identities refused, by reason: rate_limited (429) or limit_store_unavailable "
    "(503, the limit store could not count).",
    ["reason"],
)
KEYS_HELD: Final = Gauge(
    "reactions_ingest_rate_limit_keys",
    "Keys the in-process rate limits hold (those hit within their window), by scope "
    "(ip, reader, issuance); no series with a Redis limit store.",
    ["scope"],
    multiprocess_mode="livesum",
)
# How often the gauge is brought up to date: a len() per limit, off the vote path.
KEYS_HELD_INTERVAL_S: Final = 5.0
ISSUANCE_SCOPE: Final = "issuance"


class SharedWindows:
    """The same moving windows kept in Redis by the `limits` library, shared by every
    instance; a store slower than STORE_TIMEOUT_S raises TimeoutError."""

    def __init__(self, uri: str, items: dict[str, RateLimitItem]) -> None:
        self.items = items
        self.storage = storage_from_string(
            f"async+{uri}",
            implementation="redispy",  # the redis client the project already uses
            socket_connect_timeout=STORE_TIMEOUT_S,
            socket_timeout=STORE_TIMEOUT_S,
            socket_keepalive=True,
            health_check_interval=10.0,
        )
        self.limiter = MovingWindowRateLimiter(self.storage)

    async def hit(self, scope: str, key: str) -> float | None:
        """Count one hit: None when accepted, else the seconds until one would be."""
        item = self.items[scope]
        async with asyncio.timeout(STORE_TIMEOUT_S):
            if await self.limiter.hit(item, scope, key):
                return None
            stats = await self.limiter.get_window_stats(item, scope, key)
        return stats.reset_time - time.time()


class RateLimits:
    """Moving-window limits per client network and per reader, and on new identities per
    client network; `check` and `check_issuance` raise 429 (or 503) when refused."""

    def __init__(
        self, settings: IngestSettings, clock: Callable[[], float] = time.monotonic
    ) -> None:
        for scope in ("ip", "reader"):
            RATE_LIMITED.labels(scope)
        for reason in ("rate_limited", "limit_store_unavailable"):
            ISSUANCE_REFUSED.labels(reason)
        self.items: dict[str, RateLimitItem] = {
            "ip": parse(settings.rate_limit_ip),
            "reader": parse(settings.rate_limit_reader),
            ISSUANCE_SCOPE: parse(settings.rate_limit_tokens),
        }
        uri = settings.rate_limit_storage
        # Process memory (never "down") or Redis (which may be: then a timeout applies).
        self.local: dict[str, MovingWindow] | None = None
        self.shared: SharedWindows | None = None
        if uri.startswith("memory"):
            self.local = {
                scope: MovingWindow(item.amount, item.get_expiry(), clock)
                for scope, item in self.items.items()
            }
        else:
            self.shared = SharedWindows(uri, self.items)
        self.trusted: tuple[IpNetwork, ...] = settings.trusted_proxies
        self.prefixes = (settings.token_network_prefix_v4, settings.token_network_prefix_v6)
        # Without a configured salt (memory store only: settings refuse a shared store
        # without one) each process draws its own.
        salt = settings.ip_salt() or secrets.token_bytes(32)
        self._salt = hashlib.sha256(salt).digest()

    async def report_keys_held(self) -> None:
        """Set the keys-held gauge every few seconds until cancelled (memory store only)."""
        while self.local is not None:
            for scope, window in self.local.items():
                KEYS_HELD.labels(scope).set(len(window))
            await asyncio.sleep(KEYS_HELD_INTERVAL_S)

    def client_hash(self, scope: Scope) -> str:
        """A salted hash of the client's network: of the peer, or of X-Forwarded-For's client
        when the peer is a trusted proxy."""
        network = client_network(client_ip(scope, self.trusted), *self.prefixes)
        return hashlib.blake2b(network.encode(), key=self._salt, digest_size=12).hexdigest()

    async def check_issuance(self, client: str) -> None:
        """Count one new identity for the client network `client`; 429 over the limit, 503
        when the store cannot count it (fails closed)."""
        if self.local is not None:
            retry = self.local[ISSUANCE_SCOPE].hit(client)
        else:
            assert self.shared is not None
            try:
                retry = await self.shared.hit(ISSUANCE_SCOPE, client)
            except Exception as exc:  # noqa: BLE001 - any store failure refuses the identity
                log.warning("rate_limit_store_failed", error=repr(exc), scope=ISSUANCE_SCOPE)
                ISSUANCE_REFUSED.labels("limit_store_unavailable").inc()
                raise ApiError(
                    503,
                    "limit_store_unavailable",
                    "New readers cannot be registered right now; please retry shortly.",
                    {"Retry-After": "5"},
                ) from None
        if retry is None:
            return
        ISSUANCE_REFUSED.labels("rate_limited").inc()
        retry_after = max(1, math.ceil(retry))
        raise ApiError(
            429,
            "rate_limited",
            f"Too many new readers from this network; retry in {retry_after} s.",
            {"Retry-After": str(retry_after)},
        )

    async def check(self, scope: str, key: str) -> None:
        """Count one write against `key` in `scope` ("ip" or "reader"); raise 429 with
        Retry-After when over the limit."""
        if self.local is not None:
            retry = self.local[scope].hit(key)
        else:
            assert self.shared is not None
            try:
                retry = await self.shared.hit(scope, key)
            except Exception as exc:  # noqa: BLE001 - an unreachable limit store must not stop writes
                log.warning("rate_limit_store_failed", error=repr(exc))
                return
        if retry is None:
            return
        RATE_LIMITED.labels(scope).inc()
        retry_after = max(1, math.ceil(retry))
        who = "network" if scope == "ip" else "reader"
        raise ApiError(
            429,
            "rate_limited",
            f"Too many reactions from this {who}; retry in {retry_after} s.",
            {"Retry-After": str(retry_after)},
        )
