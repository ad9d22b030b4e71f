"""Abuse controls: write limits per client network and per reader (memory and
Redis-backed), client addresses from trusted proxies only and never stored raw, and the
CORS allow-list. New identities are limited in test_identity.py."""

from __future__ import annotations

import ipaddress
import time
import uuid

import httpx
import pytest
from redis.asyncio import Redis

from deploy.local.client import MintedTokens, VoteClient
from deploy.local.kafka import KafkaBroker
from deploy.local.process import free_port
from deploy.local.redis import RedisServer
from services.ingest.ratelimit import client_ip, client_network
from tests.support import (
    IngestFactory,
    assert_error,
    eventually,
    metric,
    metric_sum,
    read_topic,
    silent_listener,
)

SALT = "a-salt-shared-by-every-instance"


async def _put(
    votes: VoteClient, reader: str, ip: str | None = None, article: str = "a1"
) -> httpx.Response:
    headers = {"x-forwarded-for": ip} if ip else {}
    return await votes.set(article, reader, "like", headers=headers)


def _assert_429(response: httpx.Response) -> None:
    assert_error(response, 429, "rate_limited")
    assert 1 <= int(response.headers["retry-after"]) <= 60


async def test_per_reader_and_per_ip_limits_with_untrusted_forwarded_for(
    kafka: KafkaBroker, spawn_ingest: IngestFactory, tokens: MintedTokens
) -> None:
    service = spawn_ingest(
        f"abuse-{uuid.uuid4().hex[:8]}",
        {"REACTIONS_RATE_LIMIT_READER": "3/minute", "REACTIONS_RATE_LIMIT_IP": "8/minute"},
    )
    async with httpx.AsyncClient(base_url=service.url, timeout=30) as http:
        votes = VoteClient(service.url, http=http, tokens=tokens)
        for article in ("a1", "a2", "a3"):
            assert (await _put(votes, "a.r1", article=article)).status_code == 202
        _assert_429(await _put(votes, "a.r1"))
        _assert_429(await votes.clear("a9", "a.r1"))
        # Other readers get through until the address has used its 8 a minute (refused
        # writes count too);
        # X-Forwarded-For from a peer that is not a trusted proxy changes nothing.
        assert (await _put(votes, "a.r2", ip="198.51.100.1")).status_code == 202
        assert (await _put(votes, "a.r3", ip="198.51.100.2")).status_code == 202
        assert (await _put(votes, "a.r4", ip="198.51.100.3")).status_code == 202
        _assert_429(await _put(votes, "a.r5", ip="198.51.100.4"))
        metrics = (await http.get("/metrics")).text
        # The limits held in memory: the four readers that got past the network's limit,
        # one network (the peer's), no new identity.
        held = await eventually(
            lambda: http.get("/metrics"),
            lambda r: (
                metric_sum(r.text, "reactions_ingest_rate_limit_keys", {"scope": "reader"}) == 4
            ),
            what="the keys-held gauge",
        )
    assert metric_sum(metrics, "reactions_ingest_rate_limited_total", {"scope": "reader"}) == 2
    assert metric_sum(metrics, "reactions_ingest_rate_limited_total", {"scope": "ip"}) == 1
    assert metric_sum(held.text, "reactions_ingest_rate_limit_keys", {"scope": "ip"}) == 1
    assert metric_sum(held.text, "reactions_ingest_rate_limit_keys", {"scope": "issuance"}) == 0
    service.stop()


async def test_client_ip_comes_from_trusted_proxies_and_is_never_stored_raw(
    kafka: KafkaBroker, spawn_ingest: IngestFactory, tokens: MintedTokens
) -> None:
    topic = f"abuse-{uuid.uuid4().hex[:8]}"
    service = spawn_ingest(
        topic,
        {
            "REACTIONS_RATE_LIMIT_IP": "2/minute",
            "REACTIONS_TRUSTED_PROXIES": "127.0.0.0/8, 10.0.0.0/8",
            "REACTIONS_LOG_LEVEL": "DEBUG",
        },
    )
    async with VoteClient(service.url, timeout=30, tokens=tokens) as votes:
        assert (await _put(votes, "a.r1", ip="203.0.113.5")).status_code == 202
        assert (await _put(votes, "a.r2", ip="203.0.113.5")).status_code == 202
        _assert_429(await _put(votes, "a.r3", ip="203.0.113.5"))
        # A client-supplied hop left of the real client does not buy a fresh limit.
        _assert_429(await _put(votes, "a.r4", ip="198.51.100.7, 203.0.113.5"))
        # Trusted hops (10.x) right of the client are skipped.
        _assert_429(await _put(votes, "a.r5", ip="203.0.113.5, 10.1.2.3"))
        assert (await _put(votes, "a.r6", ip="203.0.113.6, 10.1.2.3")).status_code == 202
        assert (await _put(votes, "a.r7", ip="203.0.113.6")).status_code == 202
        _assert_429(await _put(votes, "a.r8", ip="203.0.113.6"))
        # One IPv6 client holds a whole /64: another address in it shares the limit.
        assert (await _put(votes, "a.r9", ip="2001:db8:1:2::1")).status_code == 202
        assert (await _put(votes, "a.r10", ip="2001:db8:1:2::ffff")).status_code == 202
        _assert_429(await _put(votes, "a.r11", ip="2001:db8:1:2:abcd::9"))
        assert (await _put(votes, "a.r12", ip="2001:db8:1:3::1")).status_code == 202
    service.stop()

    log = service.process.log_path.read_text()
    assert "event_accepted" in log  # the debug log ran, and still holds no address
    records = await read_topic(kafka.bootstrap, topic, at_least=4)
    stored = log + "".join(r.value.decode() + r.key.decode() for r in records)
    for address in ("203.0.113.5", "203.0.113.6", "198.51.100.7", "2001:db8:1:2"):
        assert address not in stored


async def test_redis_backed_limits_are_shared_by_instances_and_hold_no_raw_ip(
    kafka: KafkaBroker,
    redis_server: RedisServer,
    redis: Redis,
    spawn_ingest: IngestFactory,
    tokens: MintedTokens,
) -> None:
    topic = f"abuse-{uuid.uuid4().hex[:8]}"
    env = {
        "REACTIONS_RATE_LIMIT_STORAGE": redis_server.url,
        "REACTIONS_RATE_LIMIT_READER": "3/minute",
        "REACTIONS_RATE_LIMIT_IP": "100/minute",
        "REACTIONS_TRUSTED_PROXIES": "127.0.0.1/32",
        "REACTIONS_IP_HASH_SALT": SALT,
    }
    first = spawn_ingest(topic, env)
    second = spawn_ingest(topic, env)
    async with (
        VoteClient(first.url, timeout=30, tokens=tokens) as one,
        VoteClient(second.url, timeout=30, tokens=tokens) as two,
    ):
        assert (await _put(one, "a.shared", ip="203.0.113.9")).status_code == 202
        assert (await _put(two, "a.shared", ip="203.0.113.9")).status_code == 202
        assert (await _put(one, "a.shared", ip="203.0.113.9")).status_code == 202
        _assert_429(await _put(two, "a.shared", ip="203.0.113.9"))
    first.stop()
    second.stop()

    keys = [key async for key in redis.scan_iter("*")]
    assert keys  # the counters really are in Redis
    dump = " ".join(keys)
    for key in keys:
        if await redis.type(key) == "list":
            dump += " ".join(await redis.lrange(key, 0, -1))
    assert "203.0.113.9" not in dump and "127.0.0.1" not in dump


async def test_an_unreachable_limit_store_lets_writes_through(
    kafka: KafkaBroker, spawn_ingest: IngestFactory, tokens: MintedTokens
) -> None:
    service = spawn_ingest(
        f"abuse-{uuid.uuid4().hex[:8]}",
        {
            "REACTIONS_RATE_LIMIT_STORAGE": f"redis://127.0.0.1:{free_port()}/0",
            "REACTIONS_RATE_LIMIT_READER": "1/minute",
            "REACTIONS_IP_HASH_SALT": SALT,
        },
    )
    async with VoteClient(service.url, timeout=30, tokens=tokens) as votes:
        for _ in range(3):
            assert (await _put(votes, "a.r1")).status_code == 202
    service.stop()
    assert "rate_limit_store_failed" in service.process.log_path.read_text()


async def test_a_frozen_limit_store_lets_writes_through_within_its_timeout(
    kafka: KafkaBroker, spawn_ingest: IngestFactory, tokens: MintedTokens
) -> None:
    """A limit store that accepts connections and never answers: each write waits at most
    the store's 0.5 s timeout, then goes through (ingest needs Kafka, not Redis)."""
    with silent_listener() as port:
        service = spawn_ingest(
            f"abuse-{uuid.uuid4().hex[:8]}",
            {
                "REACTIONS_RATE_LIMIT_STORAGE": f"redis://127.0.0.1:{port}/0",
                "REACTIONS_IP_HASH_SALT": SALT,
                "REACTIONS_RATE_LIMIT_READER": "1/minute",
            },
        )
        async with VoteClient(service.url, timeout=30, tokens=tokens) as votes:
            for _ in range(3):
                started = time.monotonic()
                assert (await _put(votes, "a.r1")).status_code == 202
                # Two checks (per network, per reader) of 0.5 s each at most, then the publish.
                assert time.monotonic() - started < 2 * 0.5 + 1.0
    service.stop()
    assert "rate_limit_store_failed" in service.process.log_path.read_text()


async def test_cors_allow_list_preflight_for_votes_with_a_token_without_credentials(
    kafka: KafkaBroker, spawn_ingest: IngestFactory, tokens: MintedTokens
) -> None:
    allowed = "https://news.example"
    service = spawn_ingest(
        f"cors-{uuid.uuid4().hex[:8]}",
        {"REACTIONS_ALLOWED_ORIGINS": f"{allowed}, https://other.example"},
    )
    async with httpx.AsyncClient(timeout=30) as http:
        votes = VoteClient(service.url, http=http, tokens=tokens)
        for url in (votes.api.votes_url, f"{service.url}/v1/readers"):
            preflight = await http.options(
                url,
                headers={
                    "origin": allowed,
                    "access-control-request-method": "POST",
                    "access-control-request-headers": "authorization, content-type",
                },
            )
            assert preflight.status_code == 200, preflight.text
            assert preflight.headers["access-control-allow-origin"] == allowed
            assert "POST" in preflight.headers["access-control-allow-methods"]
            allowed_headers = preflight.headers["access-control-allow-headers"].lower()
            assert {"authorization", "content-type"} <= {
                h.strip() for h in allowed_headers.split(",")
            }
            # One preflight a browser may keep for ten minutes covers every vote.
            assert int(preflight.headers["access-control-max-age"]) >= 600
            assert "access-control-allow-credentials" not in preflight.headers

        refused = await http.options(
            votes.api.votes_url,
            headers={"origin": "https://evil.example", "access-control-request-method": "POST"},
        )
        assert_error(refused, 400, "cors_rejected")
        assert "access-control-allow-origin" not in refused.headers

        put = await votes.set("a1", "a.r1", "like", headers={"origin": allowed})
        assert put.status_code == 202
        assert put.headers["access-control-allow-origin"] == allowed
        assert "access-control-allow-credentials" not in put.headers
        foreign = await votes.set("a1", "a.r1", "like", headers={"origin": "https://evil.example"})
        assert "access-control-allow-origin" not in foreign.headers
    service.stop()


TRUSTED = (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("127.0.0.1/32"))


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        ("192.0.2.1", "203.0.113.1", "192.0.2.1"),  # untrusted peer: header ignored
        ("10.0.0.1", None, "10.0.0.1"),
        ("10.0.0.1", "203.0.113.1", "203.0.113.1"),
        ("10.0.0.1", "198.51.100.1, 203.0.113.1", "203.0.113.1"),
        ("10.0.0.1", "203.0.113.1, 10.0.0.2", "203.0.113.1"),
        ("10.0.0.1", "garbage, 10.0.0.2", "10.0.0.2"),
        ("10.0.0.1", "203.0.113.1, garbage", "10.0.0.1"),
        ("10.0.0.1", "2001:db8::1", "2001:db8::1"),
        ("127.0.0.1", "10.0.0.5", "10.0.0.5"),  # all hops trusted: the leftmost
    ],
)
def test_client_ip_resolution(peer: str, forwarded: str | None, expected: str) -> None:
    headers = [(b"x-forwarded-for", forwarded.encode())] if forwarded else []
    scope = {"type": "http", "client": (peer, 5555), "headers": headers}
    assert client_ip(scope, TRUSTED) == expected


@pytest.mark.parametrize(
    ("address", "v4", "v6", "network"),
    [
        ("203.0.113.5", 32, 64, "203.0.113.5"),
        ("203.0.113.5", 24, 64, "203.0.113.0/24"),
        ("2001:db8:1:2:3:4:5:6", 32, 64, "2001:db8:1:2::/64"),
        ("2001:db8:1:2:3:4:5:6", 32, 48, "2001:db8:1::/48"),
        ("2001:db8::1", 32, 128, "2001:db8::1"),
        ("::ffff:203.0.113.5", 32, 64, "203.0.113.5"),  # an IPv4 client seen over IPv6
        ("unix-socket", 32, 64, "unix-socket"),
    ],
)
def test_client_networks(address: str, v4: int, v6: int, network: str) -> None:
    assert client_network(address, v4, v6) == network


async def test_forged_tokens_cost_a_signature_check_only_within_the_network_limit(
    kafka: KafkaBroker, spawn_ingest: IngestFactory, tokens: MintedTokens
) -> None:
    """Votes and renewals alike: a script sending well-formed tokens with a wrong signature
    makes ingest verify only as many as its network may write; then 429, unverified."""
    service = spawn_ingest(f"abuse-{uuid.uuid4().hex[:8]}", {"REACTIONS_RATE_LIMIT_IP": "4/minute"})
    head, claims, signature = tokens.token("a.forged").split(".")
    middle = len(signature) // 2
    flipped = "A" if signature[middle] != "A" else "B"
    forged = f"{head}.{claims}.{signature[:middle]}{flipped}{signature[middle + 1 :]}"
    async with VoteClient(service.url, timeout=30, tokens=tokens) as votes:
        checked = await metric(service.url, "reactions_token_checks_total")
        answers = []
        for _ in range(6):
            answers.append(await votes.new_reader(forged))
            answers.append(await votes.vote(forged, "a1", "like"))
        for answer in answers[:4]:
            assert_error(answer, 401, "invalid_token")
        for answer in answers[4:]:
            _assert_429(answer)
        assert await metric(service.url, "reactions_token_checks_total") - checked == 4
    service.stop()
