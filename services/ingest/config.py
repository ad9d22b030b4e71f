"""Ingest settings: the only place the ingest service reads the environment."""

from __future__ import annotations

from pathlib import Path
from typing import Self

from limits import parse
from pydantic import Field, SecretStr, field_validator, model_validator

from services.ingest.tokens import TokenIssuer, load_signing_key
from shared.jwks import KeyFileError, VerificationKey, key_algorithms
from shared.settings import HttpServiceSettings, empty_path_is_unset

MIN_SALT_BYTES = 16


class IngestSettings(HttpServiceSettings):
    """Settings of the write path."""

    host: str = Field("127.0.0.1", description="Interface the ingest service binds.")
    ingest_port: int = Field(8000, ge=1, le=65535, description="Ingest HTTP port.")
    workers: int = Field(1, ge=1, le=64, description="Ingest uvicorn worker processes.")
    publish_timeout_s: float = Field(
        2.0, gt=0, le=30, description="Longest wait for Kafka's ack before answering 503."
    )
    linger_ms: int = Field(2, ge=0, le=100, description="Producer linger for batching.")
    rate_limit_ip: str = Field(
        "600/minute", description="Writes allowed per client network (limits notation)."
    )
    rate_limit_reader: str = Field(
        "60/minute", description="Writes allowed per reader id (limits notation)."
    )
    rate_limit_tokens: str = Field(
        "20/hour", description="New reader identities issued per client network (limits notation)."
    )
    rate_limit_storage: str = Field(
        "memory://", description="Rate-limit counters: memory:// (per process) or a redis URL."
    )
    token_network_prefix_v4: int = Field(
        32, ge=8, le=32, description="IPv4 prefix length a client network is counted by."
    )
    token_network_prefix_v6: int = Field(
        64, ge=16, le=128, description="IPv6 prefix length a client network is counted by."
    )
    ip_hash_salt: SecretStr | None = Field(
        None, description="Salt for hashing client networks in rate-limit keys."
    )
    ip_hash_salt_file: Path | None = Field(
        None, description="File holding the salt (instead of REACTIONS_IP_HASH_SALT)."
    )
    token_signing_key_file: Path | None = Field(
        None,
        description="PEM (PKCS8) P-256 (ES256) or Ed25519 (EdDSA) private key that signs "
        "reader tokens.",
    )
    token_signing_key_id: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9._~-]{1,64}$",
        description="kid of the signing key; default: the key file's name without suffix.",
    )
    token_ttl_s: int = Field(
        365 * 86400, ge=60, le=2 * 365 * 86400, description="Lifetime of issued reader tokens."
    )

    @field_validator("rate_limit_ip", "rate_limit_reader", "rate_limit_tokens")
    @classmethod
    def _valid_limit(cls, value: str) -> str:
        parse(value)  # raises ValueError with the offending string
        return value

    @field_validator("token_signing_key_file", "ip_hash_salt_file", "ip_hash_salt", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return empty_path_is_unset(value)

    @field_validator("token_signing_key_file")
    @classmethod
    def _signing_key_loads(cls, value: Path | None) -> Path | None:
        if value is not None:
            load_signing_key(value)  # KeyFileError is a ValueError
        return value

    @model_validator(mode="after")
    def _signing_key_is_published(self) -> Self:
        # A token the reader cannot verify would fail every own-vote read: the signing key's
        # public half must be in the JWKS every service reads.
        issuer = self.token_issuer_for_ingest()
        if issuer is None or self.token_public_keys_file is None:
            return self
        published = self.reader_token_keys().get(issuer.kid)
        if published is None or published.key != issuer.key.public_key():
            raise ValueError(
                f"REACTIONS_TOKEN_PUBLIC_KEYS_FILE has no key {issuer.kid!r} matching "
                "REACTIONS_TOKEN_SIGNING_KEY_FILE: publish the new public key first"
            )
        return self

    @model_validator(mode="after")
    def _limits_are_shared_safely(self) -> Self:
        if self.ip_hash_salt is not None and self.ip_hash_salt_file is not None:
            raise ValueError("REACTIONS_IP_HASH_SALT and REACTIONS_IP_HASH_SALT_FILE: set one")
        salt = self.ip_salt()  # a salt file that cannot be read stops here
        if not self.rate_limit_storage.startswith("memory") and salt is None:
            # Each instance would draw its own random salt and key one client differently.
            raise ValueError(
                "REACTIONS_IP_HASH_SALT (or _FILE) is required with a shared limit store"
            )
        return self

    @model_validator(mode="after")
    def _production_is_safe_to_issue(self) -> Self:
        if self.env != "production":
            return self
        if self.token_signing_key_file is None:
            raise ValueError("REACTIONS_TOKEN_SIGNING_KEY_FILE: production needs a signing key")
        if self.rate_limit_storage.startswith("memory"):
            raise ValueError(
                "REACTIONS_RATE_LIMIT_STORAGE: memory:// counts per process; production needs "
                "a redis:// store shared by every instance"
            )
        return self

    def ip_salt(self) -> bytes | None:
        """The configured salt of client-network hashes, or None."""
        if self.ip_hash_salt is not None:
            salt, setting = self.ip_hash_salt.get_secret_value().encode(), "REACTIONS_IP_HASH_SALT"
        elif self.ip_hash_salt_file is not None:
            setting = "REACTIONS_IP_HASH_SALT_FILE"
            try:
                salt = self.ip_hash_salt_file.read_bytes().strip()
            except OSError as exc:
                raise ValueError(f"{setting}: {exc.strerror or exc}") from None
        else:
            return None
        if len(salt) < MIN_SALT_BYTES:
            # A short secret salt can be guessed, and with it every hashed address.
            raise ValueError(f"{setting}: the salt needs {MIN_SALT_BYTES} bytes or more")
        return salt

    def token_issuer_for_ingest(self) -> TokenIssuer | None:
        """The signer of reader tokens, or None when no signing key is configured."""
        path = self.token_signing_key_file
        if path is None:
            return None
        try:
            key = load_signing_key(path)
        except KeyFileError as exc:
            raise ValueError(f"REACTIONS_TOKEN_SIGNING_KEY_FILE: {exc}") from None
        return TokenIssuer(
            key,
            self.token_signing_key_id or path.stem,
            issuer=self.token_issuer,
            audience=self.token_audience,
            ttl_s=self.token_ttl_s,
        )

    def own_verification_keys(self) -> dict[str | None, VerificationKey]:
        """The signing key's public half by kid: ingest verifies what it signs without a JWKS."""
        issuer = self.token_issuer_for_ingest()
        if issuer is None:
            return {}
        public = issuer.key.public_key()
        return {issuer.kid: VerificationKey(issuer.kid, public, key_algorithms(public))}

    @field_validator("rate_limit_storage")
    @classmethod
    def _valid_storage(cls, value: str) -> str:
        if value.split("://", 1)[0] not in ("memory", "redis", "rediss", "redis+unix"):
            raise ValueError("must be memory:// or a redis:// URL")
        return value
