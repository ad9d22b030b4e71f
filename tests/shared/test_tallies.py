"""The Redis client every service connects with: no network wait without a deadline."""

from __future__ import annotations

import socket
import time

import pytest
from redis.exceptions import RedisError

from deploy.local.redis import RedisServer
from services.aggregator.config import AggregatorSettings
from services.aggregator.scripts import run_pipelined
from shared.tallies import APPLIES, READS, RedisDeadlines, connect_redis
from tests.support import silent_listener

QUICK = RedisDeadlines(socket_timeout_s=0.5, connect_timeout_s=0.5)


@pytest.mark.parametrize("pipelined", [False, True], ids=["command", "pipeline"])
async def test_a_redis_that_never_answers_fails_within_the_socket_timeout(pipelined: bool) -> None:
    with silent_listener() as port:
        redis = connect_redis(f"redis://127.0.0.1:{port}/0", QUICK)
        started = time.monotonic()
        with pytest.raises(RedisError):
            if pipelined:
                await run_pipelined(redis, [("PING",), ("PING",)])
            else:
                await redis.ping()
        elapsed = time.monotonic() - started
        await redis.aclose()
    # One timeout (the handshake's or the reply's), not a wait for the OS to give up.
    assert elapsed < 2 * QUICK.socket_timeout_s + 0.5, elapsed


async def test_every_connection_has_keepalive_and_health_checks(redis_server: RedisServer) -> None:
    for deadlines in (READS, APPLIES):
        redis = connect_redis(redis_server.url, deadlines)
        try:
            assert await redis.ping()
            connection = await redis.connection_pool.get_connection()  # type: ignore[no-untyped-call]
            try:
                sock = connection._writer.get_extra_info("socket")
                assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
                assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 10
                assert connection.socket_timeout == deadlines.socket_timeout_s
                assert connection.health_check_interval == deadlines.health_check_interval_s
            finally:
                await redis.connection_pool.release(connection)
        finally:
            await redis.aclose()


def test_the_applies_deadline_outlasts_the_largest_batch_and_not_a_rebalance() -> None:
    fields = AggregatorSettings.model_fields
    largest_batch = next(m.le for m in fields["max_batch"].metadata if hasattr(m, "le"))
    # The whole batch is written while Redis runs it, at 7-9 us an event: room for 3x that.
    assert APPLIES.socket_timeout_s > 3 * largest_batch * 9e-6
    # A batch stuck on a frozen connection is retried while a rebalance still waits for it.
    rebalance_s = fields["rebalance_timeout_ms"].default / 1000
    assert APPLIES.socket_timeout_s < rebalance_s / 2
