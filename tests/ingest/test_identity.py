"""Reader identity on a real ingest process: tokens issued and renewed, stuffing limited per
client network (and refused when the limit store is down), every kind of bad token refused
with 401 before anything is published, a site's own tokens in their namespaces, and key
rotation (from an Ed25519 key to a P-256 one)."""

from __future__ import annotations

import base64
import re
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import jwt
import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from deploy.local.client import MintedTokens, VoteClient
from deploy.local.kafka import KafkaBroker
from deploy.local.keys import DevelopmentKeys
from deploy.local.process import free_port
from deploy.local.redis import RedisServer
from services.ingest.tokens import generate_key_files, rfc3339
from shared.jwks import public_jwk
from tests.support import IngestFactory, assert_error, metric_sum, read_topic

SALT = "a-salt-shared-by-every-instance"
SITE_SECRET = b"the-site-shares-this-secret-with-us-32+"
SITE_ISSUER = "https://news.example"
SITE_AUDIENCE = "reactions-widget"


def _claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {
        "iss": "reactions",
        "aud": "reactions",
        "sub": "a.someone",
        "iat": now,
        "exp": now + 600,
    }
    return {k: v for k, v in {**base, **overrides}.items() if v is not None}


def _topic() -> str:
    return f"identity-{uuid.uuid4().hex[:8]}"


async def test_one_address_gets_a_few_identities_then_429_and_each_votes_once_per_article(
    spawn_ingest: IngestFactory, kafka: KafkaBroker, tokens: MintedTokens
) -> None:
    topic = _topic()
    service = spawn_ingest(topic, {"REACTIONS_RATE_LIMIT_TOKENS": "3/hour"})
    async with VoteClient(service.url, timeout=30) as votes:
        issued = []
        for _ in range(3):
            response = await votes.new_reader()
            assert response.status_code == 201, response.text
            assert response.headers["cache-control"] == "no-store"
            body = response.json()
            assert set(body) == {"reader_id", "token", "expires_at"}
            assert re.fullmatch(r"a\.[A-Za-z0-9_-]{22}", body["reader_id"])
            assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", body["expires_at"])
            issued.append(body)
        assert len({b["reader_id"] for b in issued}) == 3
        refused = await votes.new_reader()
        assert_error(refused, 429, "rate_limited")
        assert int(refused.headers["retry-after"]) >= 1

        # Each identity votes, once per article however often it sends the same vote.
        accepted = []
        for body in issued:
            for _ in range(2):
                vote = await votes.vote(body["token"], "stuffed", "love")
                assert vote.status_code == 202, vote.text
                assert vote.json()["reader_id"] == body["reader_id"]
                accepted.append(vote.json()["event_id"])

        # A renewal is not a new identity: it keeps the reader and is not refused.
        renewed = await votes.new_reader(issued[0]["token"])
        assert renewed.status_code == 201, renewed.text
        assert renewed.json()["reader_id"] == issued[0]["reader_id"]
        # Signed anew, for the whole lifetime from now. The development key is P-256, and an
        # ECDSA signature is randomized: even within the same second (same claims) a
        # re-signed token differs from the one sent, which an echoed one would not.
        assert renewed.json()["token"] != issued[0]["token"]
        first = jwt.decode(issued[0]["token"], options={"verify_signature": False})
        fresh = jwt.decode(renewed.json()["token"], options={"verify_signature": False})
        assert fresh["sub"] == first["sub"] and fresh["iat"] >= first["iat"]
        assert fresh["exp"] - fresh["iat"] == first["exp"] - first["iat"] == 365 * 86400
        assert renewed.json()["expires_at"] == rfc3339(fresh["exp"])
        metrics = (await votes.http.get(f"{service.url}/metrics")).text
        # Ingest took the tokens it signed as verified: their votes and the renewal cost
        # no signature check. A token signed elsewhere is checked once, then remembered.
        assert metric_sum(metrics, "reactions_token_checks_total") == 0
        for _ in range(2):
            vote = await votes.vote(tokens.token("a.minted-offline"), "stuffed", "wow")
            assert vote.status_code == 202, vote.text
        metrics = (await votes.http.get(f"{service.url}/metrics")).text
        r = await votes.http.get(f"{service.url}/metrics")
        print("DBG", r.status_code, r.headers, r.text[:200])
        assert metric_sum(metrics, "reactions_token_checks_total") == 1
    assert metric_sum(metrics, "reactions_ingest_tokens_issued_total", {"kind": "new"}) == 3
    assert metric_sum(metrics, "reactions_ingest_tokens_issued_total", {"kind": "renewal"}) == 1
    refusals = "reactions_ingest_issuance_refused_total"
    assert metric_sum(metrics, refusals, {"reason": "rate_limited"}) == 1
    assert metric_sum(metrics, refusals, {"reason": "limit_store_unavailable"}) == 0

    records = await read_topic(kafka.bootstrap, topic, at_least=8)
    keys = {r.key for r in records}
    # Four readers, one record key each on the article: compaction keeps one per reader.
    readers = [b["reader_id"] for b in issued] + ["a.minted-offline"]
    assert keys == {f"stuffed\x1f{reader}".encode() for reader in readers}


async def test_bad_tokens_are_refused_with_401_and_nothing_is_published(
    spawn_ingest: IngestFactory, kafka: KafkaBroker, token_keys: DevelopmentKeys
) -> None:
    topic = _topic()
    service = spawn_ingest(topic)
    signing = token_keys.issuer().key
    other = ec.generate_private_key(ec.SECP256R1())
    kid = token_keys.kid

    def token(key: Any = signing, algorithm: str = "ES256", **kw: Any) -> str:
        return jwt.encode(_claims(**kw), key, algorithm=algorithm, headers={"kid": kid})

    head, payload, signature = token(sub="a.victim").split(".")
    claims = orjson.loads(base64.urlsafe_b64decode(payload + "=="))
    tampered_body = orjson.dumps({**claims, "sub": "a.attacker"})
    tampered = f"{head}.{base64.urlsafe_b64encode(tampered_body).rstrip(b'=').decode()}.{signature}"
    cases = {
        "expired": (token(exp=int(time.time()) - 3600), "expired_token", "expired"),
        "tampered sub": (tampered, "invalid_token", "bad_signature"),
        "wrong key": (token(key=other), "invalid_token", "bad_signature"),
        "wrong audience": (token(aud="elsewhere"), "invalid_token", "wrong_audience"),
        "wrong issuer": (token(iss="elsewhere"), "invalid_token", "wrong_issuer"),
        "alg none": (
            jwt.encode(_claims(), None, algorithm="none", headers={"kid": kid}),
            "invalid_token",
            "algorithm",
        ),
        "not a jwt": ("not-a-token", "invalid_token", "malformed"),
        # The development key is P-256: its kid verifies ES256 only.
        "EdDSA under a P-256 kid": (
            token(key=Ed25519PrivateKey.generate(), algorithm="EdDSA"),
            "invalid_token",
            "algorithm",
        ),
    }
    async with VoteClient(service.url, timeout=30) as votes:
        for name, (bad, code, _) in cases.items():
            response = await votes.vote(bad, "guarded", "love")
            assert_error(response, 401, code)
            challenge = response.headers["www-authenticate"]
            assert challenge.startswith('Bearer realm="reactions", error="invalid_token"'), name
            assert "error_description=" in challenge, name
        # Renewing a bad token is refused the same way.
        assert_error(await votes.new_reader(cases["expired"][0]), 401, "expired_token")

        missing = await votes.send(votes.api.vote("x", "guarded", "love"), {"authorization": ""})
        assert_error(missing, 401, "missing_token")
        assert missing.headers["www-authenticate"] == 'Bearer realm="reactions"'
        basic = await votes.send(
            votes.api.vote("x", "guarded", "love"), {"authorization": "Basic dTpw"}
        )
        assert_error(basic, 401, "invalid_token")
        # The control: a good token gets through, so the refusals above were the token's.
        good = await votes.vote(token(sub="a.victim"), "control", "love")
        assert good.status_code == 202, good.text
        metrics = (await votes.http.get(f"{service.url}/metrics")).text

    for _, _, reason in cases.values():
        assert metric_sum(metrics, "reactions_token_rejections_total", {"reason": reason}) >= 1
    records = await read_topic(kafka.bootstrap, topic, at_least=1)
    assert [r.key for r in records] == [b"control\x1fa.victim"]


async def test_a_sites_tokens_vote_in_the_sites_namespace_and_are_not_renewed_here(
    spawn_ingest: IngestFactory, kafka: KafkaBroker, tmp_path: Path
) -> None:
    secret_file = tmp_path / "site-secret"
    secret_file.write_bytes(SITE_SECRET + b"\n")
    site_key = Ed25519PrivateKey.generate()
    jwks_file = tmp_path / "site-jwks.json"
    jwks_file.write_bytes(orjson.dumps({"keys": [public_jwk(site_key.public_key(), "site-1")]}))
    site = {"REACTIONS_SITE_JWT_ISSUER": SITE_ISSUER, "REACTIONS_SITE_JWT_AUDIENCE": SITE_AUDIENCE}
    topic = _topic()
    with_secret = spawn_ingest(topic, {**site, "REACTIONS_SITE_JWT_SECRET_FILE": str(secret_file)})
    with_jwks = spawn_ingest(
        topic,
        {
            **site,
            "REACTIONS_SITE_JWKS_FILE": str(jwks_file),
            "REACTIONS_SITE_JWT_ALGORITHMS": "EdDSA",
        },
    )

    def site_token(key: Any, algorithm: str, subject: str, **headers: str) -> str:
        claims = _claims(iss=SITE_ISSUER, aud=SITE_AUDIENCE, sub=subject)
        return jwt.encode(claims, key, algorithm=algorithm, headers=headers or None)

    async with httpx.AsyncClient(timeout=30) as http:
        hs = VoteClient(with_secret.url, http=http)
        vote = await hs.vote(site_token(SITE_SECRET, "HS256", "alice"), "site-1", "wow")
        assert vote.status_code == 202, vote.text
        assert vote.json()["reader_id"] == "s.alice"
        email = await hs.vote(site_token(SITE_SECRET, "HS256", "bob@news.example"), "site-1", "wow")
        assert email.status_code == 202, email.text
        assert re.fullmatch(r"h\.[0-9a-f]{40}", email.json()["reader_id"])
        renewal = await hs.new_reader(site_token(SITE_SECRET, "HS256", "alice"))
        assert_error(renewal, 400, "not_renewable")
        # A wrong secret, and the site's HS256 token on the instance expecting its JWKS.
        wrong = site_token(b"x" * 40, "HS256", "alice")
        assert_error(await hs.vote(wrong, "site-1", "wow"), 401, "invalid_token")
        ed = VoteClient(with_jwks.url, http=http)
        assert_error(await ed.vote(site_token(SITE_SECRET, "HS256", "alice"), "site-1", "wow"), 401)
        vote = await ed.vote(site_token(site_key, "EdDSA", "carol", kid="site-1"), "site-1", "sad")
        assert vote.status_code == 202, vote.text
        assert vote.json()["reader_id"] == "s.carol"

    records = await read_topic(kafka.bootstrap, topic, at_least=3)
    assert {r.key.split(b"\x1f")[1][:2] for r in records if r.key} == {b"s.", b"h."}


async def test_key_rotation_old_tokens_still_vote_new_ones_are_signed_with_the_new_key(
    spawn_ingest: IngestFactory, tmp_path: Path
) -> None:
    # From an Ed25519 key (what keys were) to a P-256 one (what new keys are).
    generate_key_files(tmp_path, "2026-01", "EdDSA")
    old = DevelopmentKeys(tmp_path, "2026-01")
    new_key, jwks = generate_key_files(tmp_path, "2026-02")  # published beside the old key
    service = spawn_ingest(
        _topic(),
        {
            "REACTIONS_TOKEN_SIGNING_KEY_FILE": str(new_key),
            "REACTIONS_TOKEN_PUBLIC_KEYS_FILE": str(jwks),
        },
    )
    async with VoteClient(service.url, timeout=30) as votes:
        old_token = old.issuer().issue("a.from-last-year").token
        assert jwt.get_unverified_header(old_token)["alg"] == "EdDSA"
        assert (await votes.vote(old_token, "rotated", "like")).status_code == 202
        issued = (await votes.new_reader()).json()
        new_header = {"alg": "ES256", "kid": "2026-02", "typ": "JWT"}
        assert jwt.get_unverified_header(issued["token"]) == new_header
        renewed = (await votes.new_reader(old_token)).json()
        assert renewed["reader_id"] == "a.from-last-year"
        assert jwt.get_unverified_header(renewed["token"]) == new_header
        assert (await votes.vote(renewed["token"], "rotated", "like")).status_code == 202


async def test_issuance_fails_closed_when_the_limit_store_is_down_while_votes_go_on(
    spawn_ingest: IngestFactory, tokens: MintedTokens, tmp_path: Path
) -> None:
    store = RedisServer(tmp_path / "limits", free_port())
    store.start()
    try:
        service = spawn_ingest(
            _topic(),
            {
                "REACTIONS_RATE_LIMIT_STORAGE": store.url,
                "REACTIONS_IP_HASH_SALT": SALT,
                "REACTIONS_RATE_LIMIT_TOKENS": "100/hour",
            },
        )
        async with VoteClient(service.url, timeout=30, tokens=tokens) as votes:
            first = await votes.new_reader()
            assert first.status_code == 201, first.text
            store.stop()
            refused = await votes.new_reader()
            assert_error(refused, 503, "limit_store_unavailable")
            assert int(refused.headers["retry-after"]) >= 1
            # Readers who have a token keep voting: writes fail open.
            vote = await votes.vote(first.json()["token"], "during-outage", "love")
            assert vote.status_code == 202, vote.text
            assert (await votes.set("during-outage", "a.regular", "wow")).status_code == 202
            metrics = (await votes.http.get(f"{service.url}/metrics")).text
    finally:
        store.stop()
    refusals = "reactions_ingest_issuance_refused_total"
    assert metric_sum(metrics, refusals, {"reason": "limit_store_unavailable"}) == 1


async def test_without_a_signing_key_issuance_answers_503_and_says_why(
    spawn_ingest: IngestFactory, tokens: MintedTokens, token_keys: DevelopmentKeys
) -> None:
    # Development only: production refuses to start without the key (test_production.py).
    service = spawn_ingest(
        _topic(),
        {
            "REACTIONS_TOKEN_SIGNING_KEY_FILE": "",
            "REACTIONS_TOKEN_PUBLIC_KEYS_FILE": str(token_keys.public_keys_file),
        },
    )
    async with VoteClient(service.url, timeout=30, tokens=tokens) as votes:
        body = assert_error(await votes.new_reader(), 503, "identity_unconfigured")
        assert "REACTIONS_TOKEN_SIGNING_KEY_FILE" in body["error"]["message"]
        assert (await votes.set("verify-only", "a.minted", "like")).status_code == 202
    assert "identity_unconfigured" in service.process.log_path.read_text()


@pytest.mark.parametrize("body", [b"{}", b""])
async def test_new_reader_takes_no_body_or_an_empty_object(
    spawn_ingest: IngestFactory, body: bytes
) -> None:
    service = spawn_ingest(_topic())
    async with httpx.AsyncClient(base_url=service.url, timeout=30) as http:
        headers = {"content-type": "application/json"} if body else {}
        assert (await http.post("/v1/readers", content=body, headers=headers)).status_code == 201
        extra = await http.post("/v1/readers", json={"reader_id": "a.mine"})
        assert_error(extra, 422, "unknown_field")
