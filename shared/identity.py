"""Who a reader is: the reader-id namespaces, bearer tokens and their verification.

A reader id comes from a verified token, never from a URL. Three namespaces that never
collide: `a.` anonymous readers (ids minted by ingest), `s.` a site's logged-in readers
whose subject fits the id alphabet, `h.` the other site subjects, hashed. Both HTTP
services verify tokens here, with public keys (or a site's HMAC secret) only; ingest
alone signs reader tokens (services/ingest/tokens.py).
"""

from __future__ import annotations

import base64
import hashlib
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

import jwt
import orjson

from shared.events import valid_user_id
from shared.jwks import VerificationKey

ANONYMOUS_PREFIX: Final = "a."
SITE_PREFIX: Final = "s."
HASHED_SITE_PREFIX: Final = "h."
NAMESPACES: Final = (ANONYMOUS_PREFIX, SITE_PREFIX, HASHED_SITE_PREFIX)
_PLAIN_SUBJECT: Final = re.compile(r"[A-Za-z0-9._~-]{1,62}")

# Longer tokens are refused unread: nothing we issue or accept comes near it.
MAX_TOKEN_CHARS: Final = 4096
# Clock skew tolerated on exp, iat and nbf between the signer and this host.
LEEWAY_S: Final = 30

# Verified tokens remembered per process (about 0.5 KiB each).
VERIFIED_CACHE_ENTRIES: Final = 20_000

ReaderKind = Literal["anonymous", "site"]


def site_reader_id(subject: str) -> str:
    """The reader id of a site's subject: `s.` + subject when it fits, else `h.` + digest."""
    if _PLAIN_SUBJECT.fullmatch(subject):
        return SITE_PREFIX + subject
    return HASHED_SITE_PREFIX + hashlib.blake2b(subject.encode(), digest_size=20).hexdigest()


def valid_reader_id(value: str) -> bool:
    """True for a reader id of one of the namespaces (`a.`, `s.`, `h.`)."""
    return value.startswith(NAMESPACES) and len(value) > 2 and valid_user_id(value)


class TokenError(Exception):
    """A request without a usable token: `code` for the API, `reason` for metrics."""

    def __init__(self, code: str, reason: str, description: str) -> None:
        super().__init__(description)
        self.code = code
        self.reason = reason
        self.description = description


# The reasons a token is refused, as the metrics label them.
REFUSAL_REASONS: Final = (
    "missing",
    "malformed",
    "expired",
    "bad_signature",
    "unknown_key",
    "wrong_issuer",
    "wrong_audience",
    "bad_claims",
    "not_yet_valid",
    "algorithm",
)


def _invalid(reason: str, description: str) -> TokenError:
    return TokenError("invalid_token", reason, description)


def _unverified(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The header and claims of a token, unverified: read only to pick the keys that then
    verify it with PyJWT. A tenth of PyJWT's own unverified decode, which checks every
    character and parses as strictly as the verifying decode that follows anyway."""
    parts = token.split(".")
    try:
        if len(parts) != 3:
            raise ValueError("not three parts")
        header = orjson.loads(base64.urlsafe_b64decode(parts[0] + "=" * (-len(parts[0]) % 4)))
        claims = orjson.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, TypeError):  # binascii.Error and orjson's errors are ValueErrors
        raise _invalid("malformed", "The token is not a well-formed JWT.") from None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise _invalid("malformed", "The token is not a well-formed JWT.")
    return header, claims


def bearer_token(authorization: str | None) -> str:
    """The token of an `Authorization: Bearer <token>` header, or TokenError."""
    if not authorization:
        raise TokenError("missing_token", "missing", "This call needs a reader token.")
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise _invalid("malformed", "The Authorization header must be 'Bearer <token>'.")
    return token


@dataclass(frozen=True, slots=True)
class Reader:
    """A verified reader: its id, where its token came from, and when the token expires."""

    reader_id: str
    kind: ReaderKind
    expires_at: int


@dataclass(frozen=True, slots=True)
class SiteKeys:
    """How a site's own tokens are verified: its HMAC secret or its public keys."""

    issuer: str
    audience: str
    algorithms: frozenset[str]
    secret: bytes | None = None
    keys: Mapping[str | None, VerificationKey] | None = None


class Verifier:
    """Verifies reader tokens: ours (ES256 or EdDSA, keys by kid) and, if configured, the site's.

    The unverified issuer only picks the key set; the signature and claims decide. Verified
    tokens are remembered (bounded LRU keyed by the whole token, until its `exp`), so a
    reader's repeated votes cost a dictionary lookup, not a signature check.
    """

    def __init__(
        self,
        keys: Mapping[str | None, VerificationKey],
        *,
        issuer: str,
        audience: str,
        site: SiteKeys | None = None,
        cache_entries: int = VERIFIED_CACHE_ENTRIES,
        clock: Callable[[], float] = time.time,
        on_check: Callable[[], object] | None = None,
    ) -> None:
        """`on_check` is called for each token verified in full (not found among those
        remembered), refused or not: the services count them."""
        self.keys = keys
        self.issuer = issuer
        self.audience = audience
        self.site = site
        self._cache: OrderedDict[str, Reader] = OrderedDict()
        self._cache_entries = cache_entries
        self._clock = clock
        self._on_check = on_check

    def verify(self, token: str) -> Reader:
        """The reader a token names; TokenError when it is not valid now."""
        cached = self._cache.get(token)
        if cached is not None and cached.expires_at > self._clock():
            self._cache.move_to_end(token)
            return cached
        if self._on_check is not None:
            self._on_check()
        reader = self._verify(token)
        self.remember(token, reader)
        return reader

    def remember(self, token: str, reader: Reader) -> None:
        """Take `token` as verified for `reader` until its expiry: one just verified, or one
        this process signed itself (its first vote then costs no signature check)."""
        if self._cache_entries > 0:
            self._cache[token] = reader
            if len(self._cache) > self._cache_entries:
                self._cache.popitem(last=False)

    def _verify(self, token: str) -> Reader:
        if len(token) > MAX_TOKEN_CHARS:
            raise _invalid("malformed", "The token is too long.")
        header, claims = _unverified(token)
        issuer = claims.get("iss")
        if issuer == self.issuer:
            return self._verify_ours(token, header)
        if self.site is not None and issuer == self.site.issuer:
            return self._verify_site(token, header, self.site)
        raise _invalid("wrong_issuer", "The token's issuer is not accepted here.")

    def _verify_ours(self, token: str, header: dict[str, Any]) -> Reader:
        kid = header.get("kid")
        key = self.keys.get(kid) if isinstance(kid, str) else None
        if key is None:
            raise _invalid("unknown_key", "The token's key id is not known.")
        # Each key verifies its own algorithm only: ES256 for a P-256 key, EdDSA for Ed25519.
        claims = self._decode(token, header, key.key, key.algorithms, self.issuer, self.audience)
        reader_id = claims["sub"]
        if not isinstance(reader_id, str) or not valid_reader_id(reader_id):
            raise _invalid("bad_claims", "The token's subject is not a reader id.")
        return Reader(reader_id, "anonymous", int(claims["exp"]))

    def _verify_site(self, token: str, header: dict[str, Any], site: SiteKeys) -> Reader:
        if site.secret is not None:
            key: Any = site.secret
            allowed = site.algorithms
        else:
            assert site.keys is not None
            kid = header.get("kid")
            found = site.keys.get(kid) if isinstance(kid, str) else None
            if found is None and kid is None and len(site.keys) == 1:
                found = next(iter(site.keys.values()))
            if found is None:
                raise _invalid("unknown_key", "The token's key id is not known.")
            key, allowed = found.key, site.algorithms & found.algorithms
        claims = self._decode(token, header, key, allowed, site.issuer, site.audience)
        subject = claims["sub"]
        if not isinstance(subject, str) or not subject:
            raise _invalid("bad_claims", "The token's subject is empty.")
        return Reader(site_reader_id(subject), "site", int(claims["exp"]))

    def _decode(
        self,
        token: str,
        header: dict[str, Any],
        key: Any,
        allowed: frozenset[str] | set[str],
        issuer: str,
        audience: str,
    ) -> dict[str, Any]:
        algorithm = header.get("alg")
        # Only the algorithms this key was made for: never `none`, never HMAC keyed with
        # a public key.
        if not isinstance(algorithm, str) or algorithm not in allowed:
            raise _invalid("algorithm", "The token's algorithm is not accepted.")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=audience,
                issuer=issuer,
                leeway=LEEWAY_S,
                options={"require": ["exp", "sub", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise TokenError("expired_token", "expired", "The token has expired.") from None
        except jwt.InvalidSignatureError:
            raise _invalid("bad_signature", "The token's signature does not verify.") from None
        except jwt.InvalidAudienceError:
            raise _invalid("wrong_audience", "The token is not meant for this service.") from None
        except jwt.InvalidIssuerError:
            raise _invalid("wrong_issuer", "The token's issuer is not accepted here.") from None
        except jwt.ImmatureSignatureError:
            raise _invalid("not_yet_valid", "The token is not valid yet.") from None
        except jwt.DecodeError:
            # Not a JWT after all: what _unverified's lenient base64 let through.
            raise _invalid("malformed", "The token is not a well-formed JWT.") from None
        except (jwt.PyJWTError, ValueError, TypeError):
            raise _invalid("bad_claims", "The token's claims are invalid.") from None
        if not isinstance(claims.get("exp"), int | float):
            raise _invalid("bad_claims", "The token's exp is not a number.")
        return claims
