"""The ingest service itself, served exactly as `python -m services.ingest` serves it, with
one part taken out: its verifier trusts each token's `sub` without checking the signature
or any claim (no verified-token cache either). Ingest's CPU per vote against this one is
what token verification costs. A baseline of the bench only: the service has no setting
that turns verification off."""

from __future__ import annotations

import base64
import os
import sys

import orjson
from starlette.types import ASGIApp

from services.ingest import app as ingest_app
from services.ingest.__main__ import serve
from services.ingest.config import IngestSettings
from shared.identity import Reader, TokenError, Verifier

FACTORY = "bench.baselines.unverified_ingest:app_from_env"


class TrustingVerifier(Verifier):
    """Reads the reader id and expiry from the token's payload; checks nothing."""

    def __init__(self) -> None:
        super().__init__({}, issuer="", audience="", cache_entries=0)

    def verify(self, token: str) -> Reader:
        """The reader the token's payload names, signature unchecked."""
        try:
            payload = token.split(".")[1]
            claims = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
            return Reader(str(claims["sub"]), "anonymous", int(claims["exp"]))
        except (IndexError, KeyError, TypeError, ValueError):
            raise TokenError("invalid_token", "malformed", "Not a JWT.") from None


def app_from_env() -> ASGIApp:
    """The ingest app as the service builds it in each worker, with the trusting verifier."""
    return ingest_app.app_from_env(TrustingVerifier())


if __name__ == "__main__":
    sys.exit(serve(IngestSettings(ingest_port=int(os.environ["BENCH_PORT"])), FACTORY))
