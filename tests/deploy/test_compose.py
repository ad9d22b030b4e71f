"""docker-compose.yml and the Dockerfile, checked by structure (no Docker engine runs here):
the KRaft broker is fully configured, Redis cannot evict, the services are wired to their
settings, and Prometheus and Grafana get our files at the paths they read."""

from __future__ import annotations

import base64
import re
import subprocess
import sys
from typing import Any

import pytest

from deploy.local.process import ROOT
from deploy.local.services import SERVICE_NAMES
from tests.deploy.files import GRAFANA_DIR, PROMETHEUS_DIR, load_yaml
from tests.deploy.settings_env import default, env_names


def test_compose_file_follows_the_compose_specification() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "check_jsonschema",
            "--builtin-schema",
            "vendor.compose-spec",
            str(ROOT / "docker-compose.yml"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_runs_the_whole_stack(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == {
        "kafka",
        "redis",
        "keys",
        *SERVICE_NAMES,
        "prometheus",
        "grafana",
        "edge",
    }
    for name, service in compose["services"].items():
        assert ":" in service["image"] and not service["image"].endswith(":latest"), name


def test_kafka_is_a_fully_configured_single_kraft_node(compose: dict[str, Any]) -> None:
    kafka = compose["services"]["kafka"]
    env = kafka["environment"]
    assert kafka["image"] == "apache/kafka:4.1.1"
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    # The image drops its defaults once any KAFKA_ variable is set: all of these must be here.
    for key in (
        "KAFKA_NODE_ID",
        "KAFKA_CONTROLLER_QUORUM_VOTERS",
        "KAFKA_LISTENERS",
        "KAFKA_ADVERTISED_LISTENERS",
        "KAFKA_CONTROLLER_LISTENER_NAMES",
        "KAFKA_INTER_BROKER_LISTENER_NAME",
        "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP",
        "KAFKA_LOG_DIRS",
    ):
        assert env.get(key), key
    replication = {k: v for k, v in env.items() if k.endswith(("_REPLICATION_FACTOR", "_MIN_ISR"))}
    assert {
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR",
        "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR",
        "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_MIN_ISR",
        "KAFKA_DEFAULT_REPLICATION_FACTOR",
    } <= set(replication)
    assert set(replication.values()) == {"1"}
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"

    node = env["KAFKA_NODE_ID"]
    controller_port = re.search(r"CONTROLLER://[^,]*:(\d+)", env["KAFKA_LISTENERS"])
    assert controller_port, env["KAFKA_LISTENERS"]
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{node}@kafka:{controller_port.group(1)}"
    assert env["KAFKA_ADVERTISED_LISTENERS"] == "PLAINTEXT://kafka:9092"
    assert "PLAINTEXT://:9092" in env["KAFKA_LISTENERS"]
    assert len(base64.urlsafe_b64decode(env["CLUSTER_ID"] + "==")) == 16
    assert any(v.endswith(":" + env["KAFKA_LOG_DIRS"]) for v in kafka["volumes"])
    assert "kafka-broker-api-versions" in " ".join(kafka["healthcheck"]["test"])


def test_redis_keeps_everything_it_accepted(compose: dict[str, Any]) -> None:
    redis = compose["services"]["redis"]
    args = redis["command"]
    options = dict(zip(args[1::2], args[2::2], strict=True))
    assert args[0] == "redis-server"
    assert options["--appendonly"] == "yes"
    assert options["--maxmemory-policy"] == "noeviction"
    assert re.fullmatch(r"\d+[kmg]b", options["--maxmemory"])
    assert any(v.endswith(":/data") for v in redis["volumes"])
    assert redis["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]


@pytest.mark.parametrize("name", SERVICE_NAMES)
def test_each_service_is_wired_to_its_settings(compose: dict[str, Any], name: str) -> None:
    service = compose["services"][name]
    env = {k: str(v) for k, v in service["environment"].items()}
    port = default(name, f"{name}_port")

    assert service["build"] == "."
    assert service["command"] == ["python", "-m", f"services.{name}"]
    unknown = {k for k in env if k.startswith("REACTIONS_")} - env_names(name)
    assert not unknown, f"{name} sets variables its settings do not read: {sorted(unknown)}"
    assert env[f"REACTIONS_{name.upper()}_PORT"] == str(port)
    assert env["REACTIONS_HOST"] == "0.0.0.0"
    assert env["REACTIONS_KAFKA_BOOTSTRAP"] == "kafka:9092"
    assert env["REACTIONS_REDIS_URL"].startswith("redis://redis:6379/")
    # Ingest and the reader are reached through the edge; their own ports are for checks
    # from the host.
    published = f"{port}:{port}" if name == "aggregator" else f"127.0.0.1:{port}:{port}"
    assert service["ports"] == [published]
    check = " ".join(service["healthcheck"]["test"])
    assert f"http://127.0.0.1:{port}/readyz" in check
    expected = {
        "kafka": {"condition": "service_healthy"},
        "redis": {"condition": "service_healthy"},
    }
    if name != "aggregator":  # the HTTP services need the token keys first
        expected["keys"] = {"condition": "service_completed_successfully"}
    assert service["depends_on"] == expected


def _mounts(service: dict[str, Any]) -> dict[str, tuple[str, bool]]:
    """Container path -> (volume, read-only) of a service's volumes."""
    found = {}
    for volume in service.get("volumes", []):
        source, target, *mode = volume.split(":")
        found[target] = (source, mode == ["ro"])
    return found


def _file_on(mounts: dict[str, tuple[str, bool]], path: str) -> str:
    """The volume a file path lies on."""
    directory = path.rsplit("/", 1)[0]
    assert directory in mounts, f"{path} is on no volume"
    return mounts[directory][0]


def test_the_token_keys_and_salt_are_made_once_and_handed_in_as_files(
    compose: dict[str, Any],
) -> None:
    keys = compose["services"]["keys"]
    assert keys["image"] == compose["services"]["ingest"]["image"]
    assert keys["restart"] == "no"
    command = keys["command"]
    assert command[:4] == ["python", "-m", "deploy.local", "keys"]
    options = dict(zip(command[4::2], command[5::2], strict=True))
    made = _mounts(keys)
    signing_volume = made[options["--dir"]][0]
    public_volume = made[options["--public-dir"]][0]
    assert {signing_volume, public_volume} <= set(compose["volumes"])

    ingest = compose["services"]["ingest"]
    env = ingest["environment"]
    mounts = _mounts(ingest)
    assert all(read_only for _, read_only in mounts.values())
    assert env["REACTIONS_TOKEN_SIGNING_KEY_FILE"] == f"{options['--dir']}/{options['--kid']}.pem"
    assert _file_on(mounts, env["REACTIONS_TOKEN_SIGNING_KEY_FILE"]) == signing_volume
    assert _file_on(mounts, env["REACTIONS_IP_HASH_SALT_FILE"]) == signing_volume
    assert env["REACTIONS_IP_HASH_SALT_FILE"].endswith("/ip-hash-salt")
    assert _file_on(mounts, env["REACTIONS_TOKEN_PUBLIC_KEYS_FILE"]) == public_volume
    # New identities are counted in Redis, so every ingest instance shares the limit.
    assert env["REACTIONS_RATE_LIMIT_STORAGE"].startswith("redis://redis:6379/")

    reader = compose["services"]["reader"]
    mounts = _mounts(reader)
    assert {volume for volume, _ in mounts.values()} == {public_volume}  # never the signing key
    assert "REACTIONS_TOKEN_SIGNING_KEY_FILE" not in reader["environment"]
    public = reader["environment"]["REACTIONS_TOKEN_PUBLIC_KEYS_FILE"]
    assert _file_on(mounts, public) == public_volume
    assert "volumes" not in compose["services"]["aggregator"]


def test_the_image_gives_the_key_volumes_to_the_service_user() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "mkdir -p /var/lib/reactions/keys /var/lib/reactions/public" in dockerfile
    assert "chown -R 10001:10001 /var/lib/reactions" in dockerfile


def test_the_services_agree_on_the_shared_settings(compose: dict[str, Any]) -> None:
    shared = ("REACTIONS_TOPIC", "REACTIONS_PARTITIONS", "REACTIONS_KAFKA_BOOTSTRAP")
    values = {
        name: tuple(compose["services"][name]["environment"][key] for key in shared)
        for name in SERVICE_NAMES
    }
    assert len(set(values.values())) == 1, values


def test_prometheus_gets_our_config_and_scrapes_the_services(compose: dict[str, Any]) -> None:
    service = compose["services"]["prometheus"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in service["volumes"]}
    config_arg = next(a for a in service["command"] if a.startswith("--config.file="))
    config_path = config_arg.split("=", 1)[1]
    config_dir, config_file = config_path.rsplit("/", 1)
    assert (ROOT / mounts[config_dir]).resolve() == PROMETHEUS_DIR
    assert (PROMETHEUS_DIR / config_file).is_file()

    config = load_yaml(PROMETHEUS_DIR / config_file)
    for path in config["rule_files"]:
        assert (PROMETHEUS_DIR / path).is_file(), path
    targets = {
        job["job_name"]: [t for sc in job["static_configs"] for t in sc["targets"]]
        for job in config["scrape_configs"]
    }
    assert targets == {name: [f"{name}:{default(name, f'{name}_port')}"] for name in SERVICE_NAMES}


def test_grafana_gets_the_datasource_and_the_dashboard(compose: dict[str, Any]) -> None:
    service = compose["services"]["grafana"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in service["volumes"]}
    assert (ROOT / mounts["/etc/grafana/provisioning"]).resolve() == GRAFANA_DIR / "provisioning"

    provider = load_yaml(GRAFANA_DIR / "provisioning" / "dashboards" / "reactions.yml")
    (dashboards,) = provider["providers"]
    source = mounts[dashboards["options"]["path"]]
    assert (ROOT / source).resolve() == GRAFANA_DIR / "dashboards"
    assert (GRAFANA_DIR / "dashboards" / "reactions.json").is_file()

    datasources = load_yaml(GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yml")
    (datasource,) = datasources["datasources"]
    assert datasource["uid"] == "reactions-prometheus"
    port = next(p for p in compose["services"]["prometheus"]["ports"]).split(":")[1]
    assert datasource["url"] == f"http://prometheus:{port}"


def test_the_dockerfile_builds_one_slim_non_root_image() -> None:
    lines = [
        line.strip()
        for line in (ROOT / "Dockerfile").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert lines[0] == "FROM python:3.11-slim"
    user = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert user and user[-1].split(":")[0] not in {"root", "0"}
    assert any("pip install ." in line for line in lines)
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    for line in lines:
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (ROOT / source).exists(), source
                assert source not in ignored and source.split("/")[0] not in ignored, source
    assert {"shared", "services"} <= {
        src for line in lines if line.startswith("COPY ") for src in line.split()[1:-1]
    }
    assert {"tests", ".venv", "deploy/kafka/lib", ".git"} <= ignored


def test_the_edge_runs_the_reference_nginx_config_in_front_of_the_reader_and_ingest(
    compose: dict[str, Any],
) -> None:
    edge = compose["services"]["edge"]
    services = compose["services"]
    assert edge["image"].startswith("nginx:")
    mounts = {v.split(":")[1]: v.split(":")[0] for v in edge["volumes"]}
    templates = {
        ROOT / mounts[f"/etc/nginx/templates/{name}.conf.template"]
        for name in ("reactions", "ingest")
    }
    assert {t.resolve() for t in templates} == {
        ROOT / "deploy" / "nginx" / f"{name}.conf.template" for name in ("reactions", "ingest")
    }
    # Every placeholder of the templates is given; nginx's own variables are left alone.
    placeholders = {
        found
        for template in templates
        for found in re.findall(r"\$\{(REACTIONS_[A-Z_]+)\}", template.read_text())
    }
    assert placeholders == set(edge["environment"])
    env = edge["environment"]
    assert env["REACTIONS_READER_UPSTREAM"] == f"reader:{default('reader', 'reader_port')}"
    assert env["REACTIONS_INGEST_UPSTREAM"] == f"ingest:{default('ingest', 'ingest_port')}"
    port, ingest_port = env["REACTIONS_EDGE_PORT"], env["REACTIONS_EDGE_INGEST_PORT"]
    assert edge["ports"] == [f"{port}:{port}", f"{ingest_port}:{ingest_port}"]
    assert edge["depends_on"] == {
        "reader": {"condition": "service_healthy"},
        "ingest": {"condition": "service_healthy"},
    }
    # Both believe the edge's X-Forwarded-For; the demo page's widget writes through it.
    assert services["reader"]["environment"]["REACTIONS_TRUSTED_PROXIES"]
    assert services["ingest"]["environment"]["REACTIONS_TRUSTED_PROXIES"]
    assert services["reader"]["environment"]["REACTIONS_INGEST_PORT"] == ingest_port
