"""Public keys from JWKS files, and the algorithms each key may verify.

Both HTTP services verify reader tokens with public keys only; the signing key stays on
ingest (services/ingest/tokens.py). A key verifies only the algorithms of its own type,
so a token cannot pick an algorithm its key was not made for (no HMAC-with-a-public-key
confusion, no `none`). Reader-token keys are EC P-256 (ES256, what new keys are) or Ed25519
(EdDSA, what older keys are), side by side in one set during a rotation.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import jwt
import orjson
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

EDDSA: Final = "EdDSA"
ES256: Final = "ES256"
HMAC_ALGORITHMS: Final = frozenset({"HS256", "HS384", "HS512"})
ASYMMETRIC_ALGORITHMS: Final = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", ES256, "ES384", "ES512", EDDSA}
)
# An HMAC secret shorter than its hash is guessable offline from one token (RFC 7518 3.2).
MIN_HMAC_SECRET_BYTES: Final = 32
_EC_ALGORITHMS: Final = {"secp256r1": ES256, "secp384r1": "ES384", "secp521r1": "ES512"}
_PRIVATE_MEMBERS: Final = frozenset({"d", "p", "q", "dp", "dq", "qi", "k"})

PublicKey = (
    rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | ed448.Ed448PublicKey
)
ReaderTokenPublicKey = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey


class KeyFileError(ValueError):
    """A key file that cannot be used; the message says why."""


@dataclass(frozen=True, slots=True)
class VerificationKey:
    """One public key and the algorithms it may verify."""

    kid: str | None
    key: PublicKey
    algorithms: frozenset[str]


def key_algorithms(key: PublicKey) -> frozenset[str]:
    """The JWS algorithms a public key of this type can verify."""
    if isinstance(key, rsa.RSAPublicKey):
        return frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
    if isinstance(key, ec.EllipticCurvePublicKey):
        algorithm = _EC_ALGORITHMS.get(key.curve.name)
        return frozenset({algorithm}) if algorithm else frozenset()
    return frozenset({EDDSA})


def reader_token_algorithm(key: PublicKey) -> str | None:
    """ES256 for an EC P-256 key, EdDSA for an Ed25519 key: the one algorithm a reader-token
    key signs with; None for any other key."""
    if isinstance(key, ed25519.Ed25519PublicKey) or (
        isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1)
    ):
        (algorithm,) = key_algorithms(key)
        return algorithm
    return None


def parse_jwks(
    document: Mapping[str, Any], *, reader_token_keys: bool
) -> dict[str | None, VerificationKey]:
    """The public keys of a JWKS document by kid; KeyFileError naming the first problem.

    With `reader_token_keys` every key must have a kid and be an EC P-256 or Ed25519 key.
    """
    members = document.get("keys")
    if not isinstance(members, list) or not members:
        raise KeyFileError('must be a JWKS: {"keys": [...]} with at least one key')
    keys: dict[str | None, VerificationKey] = {}
    for index, member in enumerate(members):
        if not isinstance(member, dict):
            raise KeyFileError(f"key {index} is not a JSON object")
        kid = member.get("kid")
        name = f"key {kid!r}" if kid else f"key {index}"
        if kid is not None and (not isinstance(kid, str) or not kid):
            raise KeyFileError(f"{name}: kid must be a non-empty string")
        if _PRIVATE_MEMBERS & member.keys():
            raise KeyFileError(f"{name} holds private key material; publish public keys only")
        if member.get("use", "sig") != "sig":
            raise KeyFileError(f"{name} is not a signature key (use={member.get('use')!r})")
        try:
            parsed = jwt.PyJWK(member)
        except (jwt.PyJWTError, ValueError, TypeError) as exc:
            raise KeyFileError(f"{name}: {exc}") from None
        key = parsed.key
        if not isinstance(key, PublicKey):
            raise KeyFileError(f"{name} is not a supported public key")
        if reader_token_keys and (reader_token_algorithm(key) is None or kid is None):
            raise KeyFileError(
                f"{name}: reader-token keys must be EC P-256 (ES256) or Ed25519 (OKP, EdDSA) "
                "keys with a kid"
            )
        if kid in keys:
            raise KeyFileError(f"{name} appears twice")
        keys[kid] = VerificationKey(kid, key, key_algorithms(key))
    if None in keys and len(keys) > 1:
        raise KeyFileError("every key of a set of several must have a kid")
    return keys


def load_jwks(path: Path, *, reader_token_keys: bool) -> dict[str | None, VerificationKey]:
    """`parse_jwks` of a JSON file."""
    try:
        document = orjson.loads(path.read_bytes())
    except OSError as exc:
        raise KeyFileError(f"cannot read {path}: {exc.strerror or exc}") from None
    except orjson.JSONDecodeError as exc:
        raise KeyFileError(f"{path} is not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise KeyFileError(f"{path} is not a JSON object")
    return parse_jwks(document, reader_token_keys=reader_token_keys)


def public_jwk(key: ReaderTokenPublicKey, kid: str) -> dict[str, str]:
    """The JWK of an EC P-256 or Ed25519 public key, as a reader-token JWKS lists it."""
    algorithm = reader_token_algorithm(key)
    if algorithm is None:
        raise ValueError("a reader-token key is an EC P-256 or Ed25519 key")
    jwk: dict[str, str] = jwt.get_algorithm_by_name(algorithm).to_jwk(key, as_dict=True)
    return {**jwk, "kid": kid, "alg": algorithm, "use": "sig"}


def load_secret(path: Path) -> bytes:
    """A shared secret from a file (one trailing newline stripped); KeyFileError if unusable."""
    try:
        secret = path.read_bytes()
    except OSError as exc:
        raise KeyFileError(f"cannot read {path}: {exc.strerror or exc}") from None
    secret = secret.removesuffix(b"\n").removesuffix(b"\r")
    if len(secret) < MIN_HMAC_SECRET_BYTES:
        raise KeyFileError(
            f"{path} holds {len(secret)} bytes; an HMAC secret needs {MIN_HMAC_SECRET_BYTES}+"
        )
    return secret
