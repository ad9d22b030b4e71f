"""Watches who the Redis masters are, and the epoch marker, so that a Redis that went back
in time or lost its data is noticed on the slots no batch touches too.

A failover (to a replica that lagged), a restart (from an AOF or snapshot older than the
last batch) or one master of a cluster failing over changes the identity of a master: its
run id, its replication id, or the set of primaries. A `FLUSHALL` changes none of them, but
takes the epoch marker. On a change the member checks the marker and compares every apply
mark it knows with Redis (`marks.py`); the slots that batches touch are checked by their
own calls meanwhile.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Final

from redis.asyncio import Redis, RedisCluster
from redis.exceptions import RedisError

from shared.logs import get_logger

log = get_logger(__name__)

# About once a second; sooner while Redis does not answer, so the check comes right after it
# is back.
WATCH_INTERVAL_S: Final = 1.0
RETRY_INTERVAL_S: Final = 0.2

Identity = frozenset[tuple[str, str, str]]


async def redis_identity(redis: Redis, epoch_key: str) -> Identity:
    """(node, run id, replication id) of every Redis master the client writes to, and
    ("epoch", the marker at `epoch_key` or "None", "")."""
    epoch = ("epoch", str(await redis.get(epoch_key)), "")
    if isinstance(redis, RedisCluster):
        infos = await redis.info("server", "replication", target_nodes=RedisCluster.PRIMARIES)
        return frozenset(
            {epoch}
            | {
                (node, str(info["run_id"]), str(info["master_replid"]))
                for node, info in infos.items()
            }
        )
    info = await redis.info("server", "replication")
    return frozenset({epoch, ("", str(info["run_id"]), str(info["master_replid"]))})


async def watch_identity(
    redis: Redis,
    epoch_key: str,
    seen: Identity,
    on_change: Callable[[], Awaitable[bool]],
    *,
    interval_s: float = WATCH_INTERVAL_S,
) -> None:
    """Poll the masters' identity until cancelled; await `on_change()` whenever it differs
    from the last one seen (from `seen` on); stop when it returns False."""
    while True:
        try:
            identity = await redis_identity(redis, epoch_key)
        except (RedisError, OSError, KeyError):
            # Redis is away: the batches' retries say so; look again soon.
            await asyncio.sleep(RETRY_INTERVAL_S)
            continue
        if identity != seen:
            log.info("redis_masters_changed", before=_names(seen), after=_names(identity))
            if not await on_change():
                return
            seen = identity
        await asyncio.sleep(interval_s)


def _names(identity: Identity) -> list[str]:
    """Each master as node/run id, for log lines."""
    return sorted(f"{node}/{run_id[:12]}".lstrip("/") for node, run_id, _ in identity)
