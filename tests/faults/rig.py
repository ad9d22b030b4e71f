"""The fault tests' view of their stack: where Kafka and Redis are, and how to start the
services against them."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis

from deploy.local.client import TokenSource
from deploy.local.redis import RedisServer
from deploy.local.services import Service
from tests.faults.oracle import OracleReport, assert_oracle
from tests.faults.traffic import Outcome, Traffic
from tests.support import ServiceFactory

PARTITIONS = 4
# The broker's group.min.session.timeout.ms is 6 s; the lowest timeout keeps zombie and
# crash tests short (a dead member leaves the group after this long).
SESSION_TIMEOUT_MS = 6000
# What a broker raised for big records takes (`roomy_kafka`): room for a 10 MB poison record.
LARGE_RECORD_BYTES = 16 * 1024 * 1024


@dataclass
class Rig:
    """One test's stack: where Kafka and Redis are, and how to start services against them."""

    bootstrap: str
    topic: str
    group: str
    redis_server: RedisServer
    redis: Redis
    start_service: ServiceFactory
    tokens: TokenSource
    env: dict[str, str] = field(default_factory=dict)

    def start(self, name: str, *, wait: bool = True, **env: str) -> Service:
        """Start `python -m services.<name>` against this rig's Kafka and Redis."""
        return self.start_service(name, env={**self.env, **env}, wait=wait)

    def traffic(self, ingest: Service, **options: Any) -> Traffic:
        """Traffic against `ingest`, its readers' tokens minted with the rig's key."""
        return Traffic(ingest.url, tokens=self.tokens, **options)

    async def launch(self, name: str, **env: str) -> Service:
        """`start` in a thread, so traffic keeps flowing while the service boots."""
        return await asyncio.to_thread(self.start, name, **env)

    async def oracle(
        self, outcomes: list[Outcome], *, direct_event_ids: tuple[str, ...] = ()
    ) -> OracleReport:
        """Wait for the aggregator to catch up, then check the oracle."""
        return await assert_oracle(
            self.redis, self.bootstrap, self.topic, outcomes, direct_event_ids=direct_event_ids
        )
