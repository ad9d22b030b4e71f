"""`python -m services.ingest`: check the topic, then serve the write path with uvicorn;
`mint-tokens` and `generate-keys` for operators and load tests."""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
from pathlib import Path

import uvicorn

from services.ingest.config import IngestSettings
from services.ingest.tokens import DEFAULT_ALGORITHM, generate_key_files, minted, write_tokens
from shared.identity import NAMESPACES
from shared.jwks import EDDSA, ES256
from shared.kafka import KafkaUnreachable, TopicMismatch, ensure_configured_topics
from shared.logs import configure_logging, get_logger
from shared.settings import load_settings

log = get_logger(__name__)

APP_FACTORY = "services.ingest.app:app_from_env"


def _metrics_dir() -> Path:
    """A fresh directory for prometheus-client multiprocess mode, shared by all workers.

    Must be set before any worker imports prometheus_client. An inherited
    PROMETHEUS_MULTIPROC_DIR is emptied: counters of a previous run must not be summed in.
    """
    configured = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if configured:
        path = Path(configured)
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
    else:
        path = Path(tempfile.mkdtemp(prefix="reactions-ingest-metrics-"))
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(path)
    return path


def serve(settings: IngestSettings, app_factory: str = APP_FACTORY) -> int:
    """Run the ingest service on its configured port with REACTIONS_WORKERS processes (each
    building its app with `app_factory`, an import path)."""
    try:
        # Checked here, before any worker starts, so a refusal is logged once and ends
        # the service with status 2; a worker refusing in its lifespan would end uvicorn
        # with uvicorn's own startup-failure status. Each worker checks again (app.py).
        asyncio.run(ensure_configured_topics(settings))
    except TopicMismatch as exc:
        log.error("refusing_to_start", **exc.fields())
        return 2
    except KafkaUnreachable as exc:
        log.error("kafka_unreachable", **exc.fields())
        return 1
    metrics_dir = _metrics_dir()
    try:
        uvicorn.run(
            app_factory,
            factory=True,
            workers=settings.workers,
            host=settings.host,
            port=settings.ingest_port,
            loop="uvloop",
            http="httptools",
            # The client IP is resolved by the app, from trusted proxies only.
            proxy_headers=False,
            server_header=False,
            log_config=None,
            timeout_graceful_shutdown=10,
        )
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)
    return 0


def mint_tokens(settings: IngestSettings, args: argparse.Namespace) -> int:
    """Write `--count` tokens signed with the configured key to `--out`, one per line."""
    issuer = settings.token_issuer_for_ingest()
    if issuer is None:
        sys.stderr.write("error: set REACTIONS_TOKEN_SIGNING_KEY_FILE to the signing key\n")
        return 2
    prefix = args.reader_id_prefix
    if prefix is not None and not prefix.startswith(NAMESPACES):
        sys.stderr.write(f"error: --reader-id-prefix must start with one of {NAMESPACES}\n")
        return 2
    try:
        count = write_tokens(minted(issuer, args.count, prefix, args.ttl), Path(args.out))
    except ValueError as exc:  # a prefix that makes ids outside the id alphabet
        sys.stderr.write(f"error: {exc}\n")
        return 2
    sys.stdout.write(f"wrote {count} tokens (kid {issuer.kid}) to {args.out}\n")
    return 0


def generate_keys(args: argparse.Namespace) -> int:
    """A new signing key in `--dir`, its public key added to the directory's jwks.json."""
    try:
        private, jwks = generate_key_files(Path(args.dir), args.kid, args.algorithm)
    except (ValueError, OSError) as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    sys.stdout.write(
        f"signing key {private} ({args.algorithm}, kid {args.kid}); public keys {jwks}\n"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    """Serve (no command), or run an operator command."""
    parser = argparse.ArgumentParser(
        prog="python -m services.ingest", description="Without a command: serve the write path."
    )
    commands = parser.add_subparsers(dest="command")
    mint = commands.add_parser(
        "mint-tokens",
        help="write reader tokens signed with REACTIONS_TOKEN_SIGNING_KEY_FILE, offline",
    )
    mint.add_argument("--count", type=int, required=True, help="how many tokens")
    mint.add_argument("--out", required=True, help="file of 'reader_id<TAB>token' lines")
    mint.add_argument(
        "--reader-id-prefix",
        help="ids PREFIX0, PREFIX1, ... (e.g. a.load-); default: fresh anonymous ids",
    )
    mint.add_argument("--ttl", type=int, help="token lifetime in seconds (default: the setting)")
    keys = commands.add_parser(
        "generate-keys",
        help="a new signing key (P-256 for ES256 by default) and the JWKS with its public key",
    )
    keys.add_argument("--dir", required=True, help="where <kid>.pem and jwks.json are written")
    keys.add_argument("--kid", required=True, help="the key id, e.g. 2026-01")
    keys.add_argument(
        "--algorithm",
        choices=(ES256, EDDSA),
        default=DEFAULT_ALGORITHM,
        help="ES256: an EC P-256 key (the default, the faster to verify); EdDSA: an Ed25519 key",
    )
    args = parser.parse_args(argv)
    if args.command == "generate-keys":
        return generate_keys(args)
    if args.command == "mint-tokens" and not (0 < args.count <= 10_000_000):
        parser.error("--count must be 1 to 10,000,000")
    if args.command == "mint-tokens" and args.ttl is not None and args.ttl < 60:
        parser.error("--ttl must be at least 60 seconds")
    settings = load_settings(IngestSettings, "ingest")
    configure_logging("ingest", settings.log_level)
    if args.command == "mint-tokens":
        return mint_tokens(settings, args)
    return serve(settings)


if __name__ == "__main__":
    sys.exit(main())
