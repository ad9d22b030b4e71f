"""Reader ids and token verification, in process: the namespaces, every way a token is
refused, the site's own tokens (HS256 secret and a JWKS of public keys), key rotation by
kid (from an Ed25519 key to a P-256 one too), and the cache of verified tokens."""

from __future__ import annotations

import base64
import hashlib
import time
from pathlib import Path
from typing import Any

import jwt
import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from services.ingest.tokens import TokenIssuer, generate_key_files, load_signing_key
from shared.identity import (
    MAX_TOKEN_CHARS,
    Reader,
    SiteKeys,
    TokenError,
    Verifier,
    bearer_token,
    site_reader_id,
    valid_reader_id,
)
from shared.jwks import KeyFileError, load_jwks, parse_jwks, public_jwk

SECRET = b"s" * 32


@pytest.fixture
def keys(tmp_path: Path) -> tuple[TokenIssuer, Path]:
    private, jwks = generate_key_files(tmp_path, "k1")
    issuer = TokenIssuer(
        load_signing_key(private), "k1", issuer="reactions", audience="reactions", ttl_s=3600
    )
    return issuer, jwks


def verifier_for(jwks: Path, **kw: Any) -> Verifier:
    return Verifier(
        load_jwks(jwks, reader_token_keys=True), issuer="reactions", audience="reactions", **kw
    )


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {"iss": "reactions", "aud": "reactions", "sub": "a.reader", "iat": now, "exp": now + 60}
    return {k: v for k, v in {**base, **overrides}.items() if v is not None}


def refused(verifier: Verifier, token: str) -> TokenError:
    with pytest.raises(TokenError) as caught:
        verifier.verify(token)
    return caught.value


def test_site_subjects_map_into_their_own_namespaces() -> None:
    assert site_reader_id("alice") == "s.alice"
    assert site_reader_id("a." + "x" * 60) == "s.a." + "x" * 60
    long = "x" * 63
    hashed = site_reader_id(long)
    assert hashed == "h." + hashlib.blake2b(long.encode(), digest_size=20).hexdigest()
    assert len(hashed) == 42
    for subject in ("alice@example.com", "ü", "a b", "", "x" * 63):
        reader = site_reader_id(subject)
        assert reader.startswith("h.") and valid_reader_id(reader), subject
    # The three namespaces never meet: an anonymous id is never a site id.
    assert not site_reader_id("Zk3n").startswith("a.")
    assert site_reader_id("alice@example.com") != site_reader_id("alice@example.org")


def test_reader_ids_belong_to_a_namespace() -> None:
    assert valid_reader_id("a.Zk3nQ0b1YQ2mM5hXx9e7Lw")
    assert valid_reader_id("s.alice") and valid_reader_id("h." + "0" * 40)
    for bad in ("alice", "a.", "x.alice", "a.b c", "a." + "x" * 63, "", "s.é"):
        assert not valid_reader_id(bad), bad


@pytest.mark.parametrize(
    ("header", "code"),
    [
        (None, "missing_token"),
        ("", "missing_token"),
        ("Basic abc", "invalid_token"),
        ("Bearer", "invalid_token"),
        ("Bearer   ", "invalid_token"),
    ],
)
def test_authorization_header_must_be_a_bearer_token(header: str | None, code: str) -> None:
    with pytest.raises(TokenError) as caught:
        bearer_token(header)
    assert caught.value.code == code
    assert bearer_token("bearer abc") == "abc"


def test_a_token_we_signed_verifies_and_names_its_reader(keys: tuple[TokenIssuer, Path]) -> None:
    issuer, jwks = keys
    issued = issuer.issue("a.reader-1")
    reader = verifier_for(jwks).verify(issued.token)
    assert (reader.reader_id, reader.kind, reader.expires_at) == (
        "a.reader-1",
        "anonymous",
        issued.expires_at,
    )
    header = jwt.get_unverified_header(issued.token)
    assert header == {"alg": "ES256", "kid": "k1", "typ": "JWT"}  # new keys are P-256


def test_refusals_name_their_reason(keys: tuple[TokenIssuer, Path], tmp_path: Path) -> None:
    issuer, jwks = keys
    verifier = verifier_for(jwks)
    other = ec.generate_private_key(ec.SECP256R1())
    sign = issuer.key

    def token(key: Any = sign, kid: str = "k1", **kw: Any) -> str:
        return jwt.encode(claims(**kw), key, algorithm="ES256", headers={"kid": kid})

    cases = {
        "expired": token(exp=int(time.time()) - 3600),
        "bad_signature": token(key=other),
        "unknown_key": token(kid="k9"),
        "wrong_audience": token(aud="someone-else"),
        "wrong_issuer": token(iss="someone-else"),
        "bad_claims": token(sub="alice"),  # not a reader id of a namespace
        "not_yet_valid": token(iat=int(time.time()) + 3600),
        "malformed": "not.a.jwt",
    }
    for reason, bad in cases.items():
        error = refused(verifier, bad)
        assert error.reason == reason, (reason, error.description)
        assert error.code == ("expired_token" if reason == "expired" else "invalid_token")
    assert refused(verifier, token(exp=None)).reason == "bad_claims"  # exp is required
    assert refused(verifier, "x" * (MAX_TOKEN_CHARS + 1)).reason == "malformed"


def test_tampered_subject_and_alg_none_are_refused(keys: tuple[TokenIssuer, Path]) -> None:
    issuer, jwks = keys
    verifier = verifier_for(jwks)
    head, payload, signature = issuer.issue("a.victim").token.split(".")
    body = orjson.loads(base64.urlsafe_b64decode(payload + "=="))
    forged = base64.urlsafe_b64encode(orjson.dumps({**body, "sub": "a.attacker"})).rstrip(b"=")
    assert refused(verifier, f"{head}.{forged.decode()}.{signature}").reason == "bad_signature"

    unsigned = jwt.encode(claims(), None, algorithm="none", headers={"kid": "k1"})
    assert refused(verifier, unsigned).reason == "algorithm"
    # HMAC keyed with the public key (the classic confusion) is refused by algorithm.
    public = load_jwks(jwks, reader_token_keys=True)["k1"]
    assert "HS256" not in public.algorithms
    hs = jwt.encode(claims(), b"k" * 32, algorithm="HS256", headers={"kid": "k1"})
    assert refused(verifier, hs).reason == "algorithm"


def issuer_of(private: Path) -> TokenIssuer:
    """An issuer signing with the key file `<kid>.pem`, as that kid."""
    return TokenIssuer(
        load_signing_key(private), private.stem, issuer="reactions", audience="reactions", ttl_s=60
    )


def test_key_rotation_old_key_still_verifies_new_key_signs(tmp_path: Path) -> None:
    generate_key_files(tmp_path, "2026-01")
    private, jwks = generate_key_files(tmp_path, "2026-02")  # added beside the old one
    old, new = issuer_of(tmp_path / "2026-01.pem"), issuer_of(private)
    verifier = verifier_for(jwks)
    assert verifier.verify(old.issue("a.old").token).reader_id == "a.old"
    assert verifier.verify(new.issue("a.new").token).reader_id == "a.new"
    # A token claiming the new kid but signed with the old key fails.
    mislabelled = jwt.encode(claims(), old.key, algorithm="ES256", headers={"kid": "2026-02"})
    assert refused(verifier, mislabelled).reason == "bad_signature"


def test_ed25519_and_p256_keys_side_by_side_each_verify_their_own_algorithm_only(
    tmp_path: Path,
) -> None:
    # Rotation from an Ed25519 key to a P-256 one: both are in the set until the old expires.
    generate_key_files(tmp_path, "old", "EdDSA")
    private, jwks = generate_key_files(tmp_path, "new")
    old, new = issuer_of(tmp_path / "old.pem"), issuer_of(private)
    assert (old.algorithm, new.algorithm) == ("EdDSA", "ES256")
    published = {k["kid"]: k for k in orjson.loads(jwks.read_bytes())["keys"]}
    assert {kid: (k["kty"], k["crv"], k["alg"], k["use"]) for kid, k in published.items()} == {
        "old": ("OKP", "Ed25519", "EdDSA", "sig"),
        "new": ("EC", "P-256", "ES256", "sig"),
    }
    keys = load_jwks(jwks, reader_token_keys=True)
    assert {kid: key.algorithms for kid, key in keys.items()} == {
        "old": frozenset({"EdDSA"}),
        "new": frozenset({"ES256"}),
    }
    verifier = verifier_for(jwks)
    old_token, new_token = old.issue("a.old").token, new.issue("a.new").token
    assert jwt.get_unverified_header(old_token)["alg"] == "EdDSA"
    assert jwt.get_unverified_header(new_token)["alg"] == "ES256"
    assert verifier.verify(old_token).reader_id == "a.old"
    assert verifier.verify(new_token).reader_id == "a.new"
    # A header naming the other key type's algorithm is refused, whatever key signed it.
    for key, algorithm, kid in ((new.key, "ES256", "old"), (old.key, "EdDSA", "new")):
        crossed = jwt.encode(claims(), key, algorithm=algorithm, headers={"kid": kid})
        assert refused(verifier, crossed).reason == "algorithm", (algorithm, kid)


def test_site_hs256_tokens_land_in_the_site_namespace(keys: tuple[TokenIssuer, Path]) -> None:
    _, jwks = keys
    site = SiteKeys("https://news.example", "reactions-widget", frozenset({"HS256"}), SECRET)
    verifier = verifier_for(jwks, site=site)

    def site_token(secret: bytes = SECRET, **kw: Any) -> str:
        defaults = {"iss": "https://news.example", "aud": "reactions-widget", "sub": "alice"}
        return jwt.encode(claims(**{**defaults, **kw}), secret, algorithm="HS256")

    reader = verifier.verify(site_token())
    assert (reader.reader_id, reader.kind) == ("s.alice", "site")
    assert verifier.verify(site_token(sub="alice@example.com")).reader_id.startswith("h.")
    assert refused(verifier, site_token(secret=b"x" * 32)).reason == "bad_signature"
    assert refused(verifier, site_token(aud="reactions")).reason == "wrong_audience"
    assert refused(verifier, site_token(exp=None)).reason == "bad_claims"
    assert refused(verifier, site_token(sub="")).reason == "bad_claims"
    # Without a site configured, the same token is refused.
    assert refused(verifier_for(jwks), site_token()).reason == "wrong_issuer"


def test_site_jwks_tokens_verify_by_kid_and_pin_their_algorithm(
    keys: tuple[TokenIssuer, Path],
) -> None:
    _, jwks = keys
    ed = ed25519.Ed25519PrivateKey.generate()
    rs = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    es = ec.generate_private_key(ec.SECP256R1())
    document = {
        "keys": [
            public_jwk(ed.public_key(), "site-ed"),
            {**jwt.algorithms.RSAAlgorithm.to_jwk(rs.public_key(), as_dict=True), "kid": "site-rs"},
            {**jwt.algorithms.ECAlgorithm.to_jwk(es.public_key(), as_dict=True), "kid": "site-es"},
        ]
    }
    site = SiteKeys(
        "https://id.example",
        "reactions",
        frozenset({"EdDSA", "RS256"}),
        keys=parse_jwks(document, reader_token_keys=False),
    )
    verifier = verifier_for(jwks, site=site)

    def site_token(key: Any, alg: str, kid: str) -> str:
        body = claims(iss="https://id.example", sub="user-7")
        return jwt.encode(body, key, algorithm=alg, headers={"kid": kid})

    assert verifier.verify(site_token(ed, "EdDSA", "site-ed")).reader_id == "s.user-7"
    assert verifier.verify(site_token(rs, "RS256", "site-rs")).reader_id == "s.user-7"
    # ES256 is not in the pinned list, although the key exists.
    assert refused(verifier, site_token(es, "ES256", "site-es")).reason == "algorithm"
    # A key of one type cannot verify another type's algorithm.
    assert refused(verifier, site_token(ed, "EdDSA", "site-rs")).reason == "algorithm"


def test_jwks_files_are_checked(tmp_path: Path) -> None:
    private = ed25519.Ed25519PrivateKey.generate()
    jwk = public_jwk(private.public_key(), "k")
    with pytest.raises(KeyFileError, match="private"):
        parse_jwks({"keys": [{**jwk, "d": "secret"}]}, reader_token_keys=True)
    with pytest.raises(KeyFileError, match="twice"):
        parse_jwks({"keys": [jwk, jwk]}, reader_token_keys=True)
    with pytest.raises(KeyFileError, match="at least one"):
        parse_jwks({"keys": []}, reader_token_keys=True)
    (tmp_path / "bad.json").write_text("{nope")
    with pytest.raises(KeyFileError, match="not JSON"):
        load_jwks(tmp_path / "bad.json", reader_token_keys=True)


def test_reader_token_keys_are_p256_or_ed25519_keys_with_a_kid() -> None:
    p256 = ec.generate_private_key(ec.SECP256R1()).public_key()
    p384 = ec.generate_private_key(ec.SECP384R1()).public_key()
    rs = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    ed = ed25519.Ed25519PrivateKey.generate().public_key()
    accepted = [public_jwk(p256, "p"), public_jwk(ed, "e")]
    assert set(parse_jwks({"keys": accepted}, reader_token_keys=True)) == {"p", "e"}
    refused = {
        "P-384": {**jwt.algorithms.ECAlgorithm.to_jwk(p384, as_dict=True), "kid": "x"},
        "RSA": {**jwt.algorithms.RSAAlgorithm.to_jwk(rs, as_dict=True), "kid": "x"},
        "no kid": {k: v for k, v in public_jwk(p256, "x").items() if k != "kid"},
    }
    for name, jwk in refused.items():
        with pytest.raises(KeyFileError, match=r"must be EC P-256 \(ES256\) or Ed25519") as caught:
            parse_jwks({"keys": [jwk]}, reader_token_keys=True)
        assert "with a kid" in str(caught.value), name
        # A site's key set takes them all.
        assert parse_jwks({"keys": [jwk]}, reader_token_keys=False), name
    with pytest.raises(ValueError, match="P-256 or Ed25519"):
        public_jwk(p384, "x")


def test_verified_tokens_are_cached_until_they_expire(keys: tuple[TokenIssuer, Path]) -> None:
    issuer, jwks = keys
    now = int(time.time())
    clock = [float(now)]
    checks: list[None] = []
    verifier = verifier_for(
        jwks, cache_entries=2, clock=lambda: clock[0], on_check=lambda: checks.append(None)
    )
    token = jwt.encode(
        claims(iat=now, exp=now + 600), issuer.key, algorithm="ES256", headers={"kid": "k1"}
    )
    assert verifier.verify(token).reader_id == "a.reader"
    assert verifier.verify(token).reader_id == "a.reader"
    assert len(checks) == 1
    clock[0] = now + 600  # at exp the cached entry is no longer trusted (PyJWT decides)
    verifier.verify(token)
    assert len(checks) == 2
    for i in range(3):  # bounded: older entries are evicted
        verifier.verify(issuer.issue(f"a.r{i}").token)
    assert len(verifier._cache) == 2


def test_a_token_this_process_signed_is_remembered_without_a_check(
    keys: tuple[TokenIssuer, Path],
) -> None:
    issuer, jwks = keys
    issued = issuer.issue("a.fresh")
    reader = Reader("a.fresh", "anonymous", issued.expires_at)
    checks: list[None] = []
    verifier = verifier_for(jwks, on_check=lambda: checks.append(None))
    verifier.remember(issued.token, reader)
    assert verifier.verify(issued.token) == reader
    assert checks == []
    # A verifier that keeps nothing (the bench's unchecked build) remembers nothing either.
    keeps_nothing = verifier_for(jwks, cache_entries=0, on_check=lambda: checks.append(None))
    keeps_nothing.remember(issued.token, reader)
    assert keeps_nothing.verify(issued.token) == reader
    assert len(checks) == 1


def test_odd_headers_and_claims_are_refused_not_crashed_on(
    keys: tuple[TokenIssuer, Path],
) -> None:
    issuer, jwks = keys
    verifier = verifier_for(jwks)

    def encode(part: object) -> str:
        return base64.urlsafe_b64encode(orjson.dumps(part)).rstrip(b"=").decode()

    body = encode(claims())
    for header in ({"alg": "ES256", "kid": ["k1"]}, {"alg": ["ES256"], "kid": "k1"}, [1], "x"):
        token = f"{encode(header)}.{body}.c2ln"
        assert refused(verifier, token).code == "invalid_token", header
    for odd in ([], "x", {"iss": ["reactions"]}, {"iss": {"a": 1}}):
        token = f"{encode({'alg': 'ES256', 'kid': 'k1'})}.{encode(odd)}.c2ln"
        assert refused(verifier, token).code == "invalid_token", odd
    signed = jwt.encode(claims(sub=["a.x"]), issuer.key, algorithm="ES256", headers={"kid": "k1"})
    assert refused(verifier, signed).reason == "bad_claims"
