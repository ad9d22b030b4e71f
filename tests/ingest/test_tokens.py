"""Reader tokens as ingest signs them: anonymous ids, key files, and tokens minted offline
with `python -m services.ingest mint-tokens` for operators and load tests."""

from __future__ import annotations

import base64
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import jwt
import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from deploy.local.client import TokenFile
from deploy.local.keys import DevelopmentKeys
from deploy.local.process import ROOT
from services.ingest.config import IngestSettings
from services.ingest.tokens import (
    generate_key_files,
    load_signing_key,
    new_anonymous_id,
    rfc3339,
)
from shared.identity import valid_reader_id
from shared.jwks import KeyFileError, load_jwks


def test_anonymous_ids_are_a_dot_and_16_random_bytes() -> None:
    ids = {new_anonymous_id() for _ in range(1000)}
    assert len(ids) == 1000
    for reader_id in ids:
        assert re.fullmatch(r"a\.[A-Za-z0-9_-]{22}", reader_id), reader_id
        assert len(base64.urlsafe_b64decode(reader_id[2:] + "==")) == 16
        assert valid_reader_id(reader_id)


def test_issued_tokens_carry_the_contract_claims(token_keys: DevelopmentKeys) -> None:
    issuer = token_keys.issuer(ttl_s=3600)
    issued = issuer.issue("a.someone")
    claims = jwt.decode(issued.token, options={"verify_signature": False})
    assert set(claims) == {"iss", "aud", "sub", "iat", "exp"}
    assert (claims["iss"], claims["aud"], claims["sub"]) == ("reactions", "reactions", "a.someone")
    assert claims["exp"] - claims["iat"] == 3600 and claims["exp"] == issued.expires_at
    assert jwt.get_unverified_header(issued.token)["kid"] == token_keys.kid
    with pytest.raises(ValueError, match="namespaces"):
        issuer.issue("no-namespace")
    assert rfc3339(0) == "1970-01-01T00:00:00Z"


def test_key_files_are_private_and_rotation_keeps_old_public_keys(tmp_path: Path) -> None:
    private, jwks = generate_key_files(tmp_path, "2026-01")
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    load_signing_key(private)
    generate_key_files(tmp_path, "2026-02")
    assert set(load_jwks(jwks, reader_token_keys=True)) == {"2026-01", "2026-02"}
    with pytest.raises(KeyFileError, match="already"):
        generate_key_files(tmp_path, "2026-01")
    (tmp_path / "not-a-key.pem").write_text("hello")
    with pytest.raises(KeyFileError, match="PEM"):
        load_signing_key(tmp_path / "not-a-key.pem")


def test_signing_keys_are_p256_or_ed25519(tmp_path: Path) -> None:
    generate_key_files(tmp_path, "p256")
    generate_key_files(tmp_path, "ed25519", "EdDSA")
    p256 = load_signing_key(tmp_path / "p256.pem")
    assert isinstance(p256, ec.EllipticCurvePrivateKey) and isinstance(p256.curve, ec.SECP256R1)
    assert isinstance(load_signing_key(tmp_path / "ed25519.pem"), Ed25519PrivateKey)
    others = {
        "an EC secp384r1 key": ec.generate_private_key(ec.SECP384R1()),
        "an RSA key": rsa.generate_private_key(public_exponent=65537, key_size=2048),
    }
    for found, key in others.items():
        path = tmp_path / "other.pem"
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        with pytest.raises(KeyFileError) as caught:
            load_signing_key(path)
        assert str(caught.value) == (
            f"{path} holds {found}; reader tokens are signed with an EC P-256 (ES256) or "
            "Ed25519 (EdDSA) key"
        )
    with pytest.raises(ValueError, match="ES256 or EdDSA"):
        generate_key_files(tmp_path, "rs", "RS256")  # type: ignore[arg-type]


def _ingest_command(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.ingest", *args],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_mint_tokens_writes_a_file_of_tokens_for_the_load_tools(
    token_keys: DevelopmentKeys, tmp_path: Path
) -> None:
    out = tmp_path / "tokens.tsv"
    result = _ingest_command(
        ["mint-tokens", "--count", "50", "--out", str(out), "--reader-id-prefix", "a.load-"],
        token_keys.env(),
    )
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    tokens = TokenFile(out)
    assert tokens.readers == [f"a.load-{i}" for i in range(50)]
    key = load_jwks(token_keys.public_keys_file, reader_token_keys=True)[token_keys.kid]
    assert key.algorithms == {"ES256"}  # the development key is made with the default
    claims = jwt.decode(
        tokens.token("a.load-7"), key.key, algorithms=list(key.algorithms), audience="reactions"
    )
    assert claims["sub"] == "a.load-7"

    fresh = tmp_path / "fresh.tsv"
    result = _ingest_command(
        ["mint-tokens", "--count", "3", "--out", str(fresh), "--ttl", "120"], token_keys.env()
    )
    assert result.returncode == 0, result.stderr
    assert all(re.fullmatch(r"a\.[A-Za-z0-9_-]{22}", r) for r in TokenFile(fresh).readers)

    refused = _ingest_command(
        ["mint-tokens", "--count", "1", "--out", str(fresh), "--reader-id-prefix", "x."],
        token_keys.env(),
    )
    assert refused.returncode == 2 and "must start with" in refused.stderr
    unkeyed = _ingest_command(["mint-tokens", "--count", "1", "--out", str(fresh)], {})
    assert unkeyed.returncode == 2 and "REACTIONS_TOKEN_SIGNING_KEY_FILE" in unkeyed.stderr


def test_generate_keys_command(tmp_path: Path) -> None:
    result = _ingest_command(["generate-keys", "--dir", str(tmp_path), "--kid", "k1"], {})
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "k1.pem").exists() and (tmp_path / "jwks.json").exists()
    again = _ingest_command(["generate-keys", "--dir", str(tmp_path), "--kid", "k1"], {})
    assert again.returncode == 2 and "already" in again.stderr


def test_generate_keys_rotates_from_an_ed25519_key_to_a_p256_key(tmp_path: Path) -> None:
    command = ["generate-keys", "--dir", str(tmp_path)]
    first = _ingest_command([*command, "--kid", "old", "--algorithm", "EdDSA"], {})
    assert first.returncode == 0, first.stderr
    second = _ingest_command([*command, "--kid", "new"], {})  # ES256 by default
    assert second.returncode == 0, second.stderr
    assert "(ES256, kid new)" in second.stdout
    jwks = tmp_path / "jwks.json"
    published = orjson.loads(jwks.read_bytes())["keys"]
    assert [(k["kid"], k["alg"]) for k in published] == [("old", "EdDSA"), ("new", "ES256")]

    def settings(kid: str) -> IngestSettings:
        return IngestSettings(
            token_signing_key_file=tmp_path / f"{kid}.pem", token_public_keys_file=jwks
        )

    old, new = settings("old").token_issuer_for_ingest(), settings("new").token_issuer_for_ingest()
    assert old is not None and new is not None
    assert (old.kid, old.algorithm, new.kid, new.algorithm) == ("old", "EdDSA", "new", "ES256")
    verifier = settings("new").verifier()
    issued = new.issue("a.rotated").token
    assert jwt.get_unverified_header(issued) == {"alg": "ES256", "kid": "new", "typ": "JWT"}
    assert verifier.verify(issued).reader_id == "a.rotated"
    assert verifier.verify(old.issue("a.from-before").token).reader_id == "a.from-before"
