"""Reader tokens as ingest signs them: anonymous reader ids, the Ed25519 signing key, and
the tokens issued to readers, renewed, or minted offline for operators and load tests.

Verification is the same for both HTTP services and lives in shared/identity.py.
"""

from __future__ import annotations

import base64
import os
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import jwt
import orjson
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from shared.identity import ANONYMOUS_PREFIX, valid_reader_id
from shared.jwks import EDDSA, KeyFileError, load_jwks, public_jwk

JWKS_FILE_NAME = "jwks.json"


def new_anonymous_id() -> str:
    """A fresh anonymous reader id: `a.` + 16 random bytes in base64url (22 characters)."""
    return ANONYMOUS_PREFIX + base64.urlsafe_b64encode(secrets.token_bytes(16)).decode()[:22]


def rfc3339(epoch_s: int) -> str:
    """`2026-01-02T03:04:05Z` for a unix time in seconds."""
    return datetime.fromtimestamp(epoch_s, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def load_signing_key(path: Path) -> Ed25519PrivateKey:
    """The Ed25519 private key of a PEM (PKCS8) file; KeyFileError when it is not one."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise KeyFileError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise KeyFileError(f"{path} is not an unencrypted PEM private key: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{path} is not an Ed25519 key")
    return key


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A signed reader token and what it says."""

    reader_id: str
    token: str
    expires_at: int


class TokenIssuer:
    """Signs reader tokens with the configured Ed25519 key (header `kid` names it)."""

    def __init__(
        self,
        key: Ed25519PrivateKey,
        kid: str,
        *,
        issuer: str,
        audience: str,
        ttl_s: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.key = key
        self.kid = kid
        self.issuer = issuer
        self.audience = audience
        self.ttl_s = ttl_s
        self._clock = clock

    def public_jwk(self) -> dict[str, str]:
        """The public half of the signing key, as a JWKS lists it."""
        return public_jwk(self.key.public_key(), self.kid)

    def issue(self, reader_id: str, ttl_s: int | None = None) -> IssuedToken:
        """A token for `reader_id`, valid `ttl_s` (default: the configured lifetime)."""
        if not valid_reader_id(reader_id):
            raise ValueError(f"{reader_id!r} is not a reader id of the a./s./h. namespaces")
        now = int(self._clock())
        expires_at = now + (self.ttl_s if ttl_s is None else ttl_s)
        claims = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": reader_id,
            "iat": now,
            "exp": expires_at,
        }
        token = jwt.encode(claims, self.key, algorithm=EDDSA, headers={"kid": self.kid})
        return IssuedToken(reader_id, token, expires_at)


def minted(
    issuer: TokenIssuer, count: int, prefix: str | None, ttl_s: int | None
) -> Iterator[IssuedToken]:
    """`count` tokens for fresh anonymous ids, or for `prefix` + a number (0-based)."""
    for i in range(count):
        reader_id = new_anonymous_id() if prefix is None else f"{prefix}{i}"
        yield issuer.issue(reader_id, ttl_s)


def write_tokens(tokens: Iterator[IssuedToken], out: Path) -> int:
    """One `reader_id<TAB>token` line per token, readable by its owner only; returns the count."""
    written = 0
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        for issued in tokens:
            f.write(f"{issued.reader_id}\t{issued.token}\n")
            written += 1
    return written


def generate_key_files(directory: Path, kid: str) -> tuple[Path, Path]:
    """A new signing key `<kid>.pem` (mode 600) in `directory`, and its public key added to
    the directory's `jwks.json` (created if missing: rotation keeps the older keys)."""
    if not kid or "/" in kid or kid.startswith("."):
        raise ValueError(f"{kid!r} cannot name a key file")
    directory.mkdir(parents=True, exist_ok=True)
    private_path = directory / f"{kid}.pem"
    jwks_path = directory / JWKS_FILE_NAME
    keys: list[object] = []
    if jwks_path.exists():
        load_jwks(jwks_path, ed25519_only=True)  # refuse to extend a file we cannot read back
        keys = list(orjson.loads(jwks_path.read_bytes())["keys"])
        if any(isinstance(k, dict) and k.get("kid") == kid for k in keys):
            raise KeyFileError(f"{jwks_path} already has a key {kid!r}")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    keys.append(public_jwk(key.public_key(), kid))
    jwks_path.write_bytes(orjson.dumps({"keys": keys}, option=orjson.OPT_INDENT_2) + b"\n")
    return private_path, jwks_path
