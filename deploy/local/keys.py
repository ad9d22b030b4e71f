"""The development key pair of reader tokens: generated once into a directory (`.run/keys/`
for `make run`/`make up`, a temporary one for the tests and the bench) and handed to the
services as file paths. Production keys are made the same way, once, by an operator:
`python -m services.ingest generate-keys --dir DIR --kid KID`."""

from __future__ import annotations

import os
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

from services.ingest.tokens import JWKS_FILE_NAME, TokenIssuer, generate_key_files, load_signing_key

DEVELOPMENT_KID = "dev"
SALT_FILE_NAME = "ip-hash-salt"
SIGNING_KEY_VARIABLE = "REACTIONS_TOKEN_SIGNING_KEY_FILE"
PUBLIC_KEYS_VARIABLE = "REACTIONS_TOKEN_PUBLIC_KEYS_FILE"
# A token lifetime long enough for any test or benchmark run.
TEST_TOKEN_TTL_S = 7 * 86400


@dataclass(frozen=True)
class DevelopmentKeys:
    """A signing key and the JWKS publishing its public half, in one directory."""

    directory: Path
    kid: str = DEVELOPMENT_KID

    @classmethod
    def ensure(cls, directory: Path, kid: str = DEVELOPMENT_KID) -> DevelopmentKeys:
        """The keys in `directory`, generated if they are not there yet."""
        keys = cls(directory, kid)
        if not (keys.signing_key_file.exists() and keys.public_keys_file.exists()):
            generate_key_files(directory, kid)
        return keys

    @property
    def signing_key_file(self) -> Path:
        return self.directory / f"{self.kid}.pem"

    @property
    def public_keys_file(self) -> Path:
        return self.directory / JWKS_FILE_NAME

    def env(self) -> dict[str, str]:
        """The variables that hand these keys to the services."""
        return {
            SIGNING_KEY_VARIABLE: str(self.signing_key_file),
            PUBLIC_KEYS_VARIABLE: str(self.public_keys_file),
        }

    def issuer(
        self,
        *,
        issuer: str = "reactions",
        audience: str = "reactions",
        ttl_s: int = TEST_TOKEN_TTL_S,
    ) -> TokenIssuer:
        """A signer with this key, for minting tokens as ingest would."""
        return TokenIssuer(
            load_signing_key(self.signing_key_file),
            self.kid,
            issuer=issuer,
            audience=audience,
            ttl_s=ttl_s,
        )


def ensure_salt(path: Path) -> Path:
    """A random salt for client-network hashes in `path` (mode 600), made once."""
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32) + "\n")
    return path


def ensure_secrets(directory: Path, public_dir: Path | None, kid: str) -> DevelopmentKeys:
    """Keys and a salt in `directory`, the JWKS also copied to `public_dir` (the services
    that only verify mount that one): what docker-compose's one-shot `keys` service makes."""
    keys = DevelopmentKeys.ensure(directory, kid)
    ensure_salt(directory / SALT_FILE_NAME)
    if public_dir is not None:
        public_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(keys.public_keys_file, public_dir / keys.public_keys_file.name)
    return keys
