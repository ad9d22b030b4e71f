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
import pytest

from deploy.local.client import TokenFile
from deploy.local.keys import DevelopmentKeys
from deploy.local.process import ROOT
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
    assert set(load_jwks(jwks, ed25519_only=True)) == {"2026-01", "2026-02"}
    with pytest.raises(KeyFileError, match="already"):
        generate_key_files(tmp_path, "2026-01")
    (tmp_path / "not-a-key.pem").write_text("hello")
    with pytest.raises(KeyFileError, match="PEM"):
        load_signing_key(tmp_path / "not-a-key.pem")


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
    verifier_keys = load_jwks(token_keys.public_keys_file, ed25519_only=True)
    key = verifier_keys[token_keys.kid].key
    claims = jwt.decode(tokens.token("a.load-7"), key, algorithms=["EdDSA"], audience="reactions")
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
