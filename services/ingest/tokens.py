"""Reader tokens as ingest signs them: anonymous reader ids, the signing key (EC P-256 for
ES256, what new keys are, or Ed25519 for EdDSA), and the tokens issued to readers, renewed,
or minted offline for operators and load tests.

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
from typing import Final, Literal

import jwt
import orjson
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from shared.identity import ANONYMOUS_PREFIX, valid_reader_id
from shared.jwks import (
    EDDSA,
    ES256,
    KeyFileError,
    load_jwks,
    public_jwk,
    reader_token_algorithm,
)

JWKS_FILE_NAME = "jwks.json"
# A P-256 signature verifies in about two thirds of the time of an Ed25519 one (PyJWT with
# cryptography), and every service verifies each new token: new keys are P-256.
DEFAULT_ALGORITHM: Final = ES256

SigningKey = ec.EllipticCurvePrivateKey | Ed25519PrivateKey
SigningAlgorithm = Literal["ES256", "EdDSA"]


def new_anonymous_id() -> str:
    """A fresh anonymous reader id: `a.` + 16 random bytes in base64url (22 characters)."""
    return ANONYMOUS_PREFIX + base64.urlsafe_b64encode(secrets.token_bytes(16)).decode()[:22]


def rfc3339(epoch_s: int) -> str:
    """`2026-01-02T03:04:05Z` for a unix time in seconds."""
    return datetime.fromtimestamp(epoch_s, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def load_signing_key(path: Path) -> SigningKey:
    """The EC P-256 or Ed25519 private key of a PEM (PKCS8) file; KeyFileError otherwise."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise KeyFileError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise KeyFileError(f"{path} is not an unencrypted PEM private key: {exc}") from None
    if isinstance(key, SigningKey) and reader_token_algorithm(key.public_key()) is not None:
        return key
    if isinstance(key, ec.EllipticCurvePrivateKey):
        found = f"an EC {key.curve.name} key"
    else:
        found = "an RSA key" if isinstance(key, rsa.RSAPrivateKey) else "another kind of key"
    raise KeyFileError(
        f"{path} holds {found}; reader tokens are signed with an EC P-256 (ES256) or "
        "Ed25519 (EdDSA) key"
    )


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A signed reader token and what it says."""

    reader_id: str
    token: str
    expires_at: int


class TokenIssuer:
    """Signs reader tokens with the configured key, ES256 for a P-256 key or EdDSA for an
    Ed25519 one (header `kid` names the key)."""

    def __init__(
        self,
        key: SigningKey,
        kid: str,
        *,
        issuer: str,
        audience: str,
        ttl_s: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        algorithm = reader_token_algorithm(key.public_key())
        if algorithm is None:
            raise ValueError("reader tokens are signed with an EC P-256 or Ed25519 key")
        self.key = key
        self.algorithm = algorithm
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
        token = jwt.encode(claims, self.key, algorithm=self.algorithm, headers={"kid": self.kid})
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


def generate_key_files(
    directory: Path, kid: str, algorithm: SigningAlgorithm = DEFAULT_ALGORITHM
) -> tuple[Path, Path]:
    """A new signing key `<kid>.pem` (mode 600) in `directory`, P-256 for ES256 or Ed25519
    for EdDSA, and its public key added to the directory's `jwks.json` (created if missing:
    rotation keeps the older keys, of either type)."""
    if not kid or "/" in kid or kid.startswith("."):
        raise ValueError(f"{kid!r} cannot name a key file")
    if algorithm not in (ES256, EDDSA):
        raise ValueError(f"{algorithm!r}: a signing key is made for {ES256} or {EDDSA}")
    directory.mkdir(parents=True, exist_ok=True)
    private_path = directory / f"{kid}.pem"
    jwks_path = directory / JWKS_FILE_NAME
    keys: list[object] = []
    if jwks_path.exists():
        load_jwks(jwks_path, reader_token_keys=True)  # refuse to extend a file we cannot read back
        keys = list(orjson.loads(jwks_path.read_bytes())["keys"])
        if any(isinstance(k, dict) and k.get("kid") == kid for k in keys):
            raise KeyFileError(f"{jwks_path} already has a key {kid!r}")
    key: SigningKey = (
        ec.generate_private_key(ec.SECP256R1())
        if algorithm == ES256
        else Ed25519PrivateKey.generate()
    )
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
