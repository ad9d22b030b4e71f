"""Unsafe settings stop the services at start, with status 2 and one `refusing_to_start`
line naming the setting: in production no keys, `*` origins or a per-process limit store;
everywhere a shared limit store without a salt, or a signing key its JWKS does not list."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from deploy.local.keys import DevelopmentKeys
from deploy.local.process import ROOT, free_port
from services.ingest.tokens import generate_key_files

SALT = "a-salt-shared-by-every-instance"


def run(service: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`python -m services.<service>` with only `env` set (it must stop before serving)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("REACTIONS_")}
    return subprocess.run(
        [sys.executable, "-m", f"services.{service}"],
        cwd=ROOT,
        env={
            **clean,
            # Nothing listens there: a service that got past its settings fails otherwise.
            "REACTIONS_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}",
            "REACTIONS_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
            f"REACTIONS_{service.upper()}_PORT": str(free_port()),
            **env,
        },
        capture_output=True,
        text=True,
        timeout=60,
    )


def refusal(result: subprocess.CompletedProcess[str]) -> dict[str, str]:
    """The one `refusing_to_start` line the service logged."""
    assert result.returncode == 2, result.stdout + result.stderr
    lines = [orjson.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    refusals = [line for line in lines if line.get("event") == "refusing_to_start"]
    assert len(refusals) == 1, result.stdout
    found: dict[str, str] = refusals[0]
    return found


def production(keys: DevelopmentKeys, **extra: str) -> dict[str, str]:
    """Settings production accepts, with `extra` on top."""
    return {
        "REACTIONS_ENV": "production",
        "REACTIONS_ALLOWED_ORIGINS": "https://news.example",
        "REACTIONS_RATE_LIMIT_STORAGE": f"redis://127.0.0.1:{free_port()}/1",
        "REACTIONS_IP_HASH_SALT": SALT,
        **keys.env(),
        **extra,
    }


@pytest.mark.parametrize(
    ("service", "unset", "named"),
    [
        ("ingest", "REACTIONS_TOKEN_SIGNING_KEY_FILE", "REACTIONS_TOKEN_SIGNING_KEY_FILE"),
        ("ingest", "REACTIONS_TOKEN_PUBLIC_KEYS_FILE", "REACTIONS_TOKEN_PUBLIC_KEYS_FILE"),
        ("reader", "REACTIONS_TOKEN_PUBLIC_KEYS_FILE", "REACTIONS_TOKEN_PUBLIC_KEYS_FILE"),
    ],
)
def test_production_refuses_to_start_without_keys(
    token_keys: DevelopmentKeys, service: str, unset: str, named: str
) -> None:
    env = production(token_keys, **{unset: ""})
    assert named in refusal(run(service, env))["reason"]


@pytest.mark.parametrize("service", ["ingest", "reader"])
def test_production_refuses_any_origin(token_keys: DevelopmentKeys, service: str) -> None:
    env = production(token_keys, REACTIONS_ALLOWED_ORIGINS="https://news.example,*")
    assert "REACTIONS_ALLOWED_ORIGINS" in refusal(run(service, env))["reason"]


def test_production_refuses_limits_counted_per_process(token_keys: DevelopmentKeys) -> None:
    env = production(token_keys, REACTIONS_RATE_LIMIT_STORAGE="memory://")
    assert "REACTIONS_RATE_LIMIT_STORAGE" in refusal(run("ingest", env))["reason"]


@pytest.mark.parametrize("environment", ["development", "production"])
def test_a_shared_limit_store_without_a_salt_is_refused_everywhere(
    token_keys: DevelopmentKeys, environment: str
) -> None:
    env = production(token_keys, REACTIONS_ENV=environment, REACTIONS_IP_HASH_SALT="")
    reason = refusal(run("ingest", env))["reason"]
    assert "REACTIONS_IP_HASH_SALT" in reason and "shared limit store" in reason


def test_salts_and_keys_must_be_usable(token_keys: DevelopmentKeys, tmp_path: Path) -> None:
    short = refusal(run("ingest", {"REACTIONS_IP_HASH_SALT": "short"}))["reason"]
    assert "REACTIONS_IP_HASH_SALT" in short and "16 bytes" in short
    missing = str(tmp_path / "nowhere")
    reason = refusal(run("ingest", {"REACTIONS_IP_HASH_SALT_FILE": missing}))["reason"]
    assert "REACTIONS_IP_HASH_SALT_FILE" in reason
    not_a_key = tmp_path / "key.pem"
    not_a_key.write_text("not a key")
    reason = refusal(run("ingest", {"REACTIONS_TOKEN_SIGNING_KEY_FILE": str(not_a_key)}))["reason"]
    assert "REACTIONS_TOKEN_SIGNING_KEY_FILE" in reason
    jwks = tmp_path / "jwks.json"
    jwks.write_text('{"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "x"}]}')
    reason = refusal(run("reader", {"REACTIONS_TOKEN_PUBLIC_KEYS_FILE": str(jwks)}))["reason"]
    assert "REACTIONS_TOKEN_PUBLIC_KEYS_FILE" in reason and "private" in reason


def test_a_signing_key_missing_from_the_jwks_is_refused(
    token_keys: DevelopmentKeys, tmp_path: Path
) -> None:
    # Tokens the reader could not verify: the new key must be published first.
    new_key, _ = generate_key_files(tmp_path, "next")
    env = {**token_keys.env(), "REACTIONS_TOKEN_SIGNING_KEY_FILE": str(new_key)}
    reason = refusal(run("ingest", env))["reason"]
    assert "REACTIONS_TOKEN_PUBLIC_KEYS_FILE has no key 'next'" in reason


def test_site_token_settings_are_checked(token_keys: DevelopmentKeys, tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("s" * 40)
    base = {"REACTIONS_SITE_JWT_SECRET_FILE": str(secret)}
    reason = refusal(run("reader", base))["reason"]
    assert "REACTIONS_SITE_JWT_ISSUER" in reason
    site = {
        **base,
        "REACTIONS_SITE_JWT_ISSUER": "https://news.example",
        "REACTIONS_SITE_JWT_AUDIENCE": "reactions",
    }
    reason = refusal(run("reader", {**site, "REACTIONS_SITE_JWT_ALGORITHMS": "RS256"}))["reason"]
    assert "REACTIONS_SITE_JWT_ALGORITHMS" in reason
    short = tmp_path / "short"
    short.write_text("tiny")
    reason = refusal(run("reader", {**site, "REACTIONS_SITE_JWT_SECRET_FILE": str(short)}))
    assert "REACTIONS_SITE_JWT_SECRET_FILE" in reason["reason"]
    same = {**site, "REACTIONS_SITE_JWT_ISSUER": "reactions"}
    assert "must differ" in refusal(run("reader", same))["reason"]
