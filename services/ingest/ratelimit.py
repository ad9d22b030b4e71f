"""Abuse controls of the write path: who the client is, and how often it may write.

Limits are counted per client IP and per reader id with the `limits` library (moving
window). Counters live in process memory by default (each worker and instance counts on
its own) or in Redis when configured, so all instances share them. Client IPs are only
ever kept as a salted hash: neither Redis keys nor logs see a raw address.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import secrets
import time
from typing import Final

from limits import RateLimitItem, parse
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string
from prometheus_client import Counter
from starlette.types import Scope

from services.ingest.config import IngestSettings, IpNetwork
from shared.clients import client_ip
from shared.http import ApiError
from shared.logs import get_logger

log = get_logger(__name__)

# A limit store slower than this is treated as down: writes go through (fail open).
STORE_TIMEOUT_S: Final = 0.5

RATE_LIMITED: Final = Counter(
    "reactions_ingest_rate_limited_total",
    "Writes refused with 429, by the limit that refused them (ip or reader).",
    ["scope"],
)


class RateLimits:
    """Per-IP and per-reader moving-window limits; `check` raises 429 when exceeded."""

    def __init__(self, settings: IngestSettings) -> None:
        for scope in ("ip", "reader"):
            RATE_LIMITED.labels(scope)
        uri = settings.rate_limit_storage
        options: dict[str, str | float] = {}
        # Only a remote store can be "down"; process memory is never timed out.
        self._store_timeout: float | None = None
        if not uri.startswith("memory"):
            self._store_timeout = STORE_TIMEOUT_S
            options["implementation"] = "redispy"  # the redis client the project already uses
            options["socket_connect_timeout"] = STORE_TIMEOUT_S
            options["socket_timeout"] = STORE_TIMEOUT_S
        self.storage = storage_from_string(f"async+{uri}", **options)
        self.limiter = MovingWindowRateLimiter(self.storage)
        self.per_ip: RateLimitItem = parse(settings.rate_limit_ip)
        self.per_reader: RateLimitItem = parse(settings.rate_limit_reader)
        self.trusted: tuple[IpNetwork, ...] = settings.trusted_proxies
        salt = settings.ip_hash_salt.get_secret_value() if settings.ip_hash_salt else None
        self._salt = hashlib.sha256((salt or secrets.token_hex(32)).encode()).digest()

    def client_hash(self, scope: Scope) -> str:
        """A salted hash of the client's IP: the peer, or X-Forwarded-For via a trusted proxy."""
        ip = client_ip(scope, self.trusted)
        return hashlib.blake2b(ip.encode(), key=self._salt, digest_size=12).hexdigest()

    async def check(self, scope: str, item: RateLimitItem, key: str) -> None:
        """Count one write against `key`; raise 429 with Retry-After when over the limit."""
        try:
            async with asyncio.timeout(self._store_timeout):
                if await self.limiter.hit(item, scope, key):
                    return
                stats = await self.limiter.get_window_stats(item, scope, key)
        except Exception as exc:  # noqa: BLE001 - an unreachable limit store must not stop writes
            log.warning("rate_limit_store_failed", error=repr(exc))
            return
        RATE_LIMITED.labels(scope).inc()
        retry_after = max(1, math.ceil(stats.reset_time - time.time()))
        who = "address" if scope == "ip" else "reader"
        raise ApiError(
            429,
            "rate_limited",
            f"Too many reactions from this {who}; retry in {retry_after} s.",
            {"Retry-After": str(retry_after)},
        )
