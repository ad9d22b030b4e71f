"""The Kubernetes manifests, parsed and checked: ports and env names match the services'
settings, probes hit /healthz and /readyz, termination outlasts the graceful shutdown,
resources and non-root security are set, and PDB, HPA and Service point at what exists."""

from __future__ import annotations

import ipaddress
import re
from typing import Any

import kubernetes_validate
import pytest
import yaml

from deploy.local.process import ROOT
from deploy.local.services import SERVICE_NAMES
from tests.deploy.files import K8S_DIR, load_yaml
from tests.deploy.settings_env import any_service_env_names, default, env_names

HTTP_SERVICES = ("ingest", "reader")
# The release the manifests are validated against (they need autoscaling/v2, policy/v1).
KUBERNETES_VERSION = "1.32.0"


def load_manifests() -> dict[tuple[str, str], dict[str, Any]]:
    """Every document under deploy/k8s, by (kind, name)."""
    docs: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(K8S_DIR.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is None:
                continue
            key = (doc["kind"], doc["metadata"]["name"])
            assert key not in docs, f"{key} defined twice"
            docs[key] = doc
    return docs


MANIFESTS = load_manifests()


def deployment(name: str) -> dict[str, Any]:
    return MANIFESTS[("Deployment", f"reactions-{name}")]


def container(name: str) -> dict[str, Any]:
    (only,) = deployment(name)["spec"]["template"]["spec"]["containers"]
    return only


def config_map() -> dict[str, str]:
    data: dict[str, str] = MANIFESTS[("ConfigMap", "reactions-config")]["data"]
    return data


def graceful_shutdown_seconds(name: str) -> int:
    """uvicorn's timeout_graceful_shutdown as the service's __main__ sets it."""
    source = (ROOT / "services" / name / "__main__.py").read_text()
    found = re.search(r"timeout_graceful_shutdown=(\d+)", source)
    assert found, f"services/{name}/__main__.py sets no timeout_graceful_shutdown"
    return int(found.group(1))


@pytest.mark.parametrize("key", sorted(MANIFESTS), ids="/".join)
def test_manifests_follow_the_kubernetes_schema(key: tuple[str, str]) -> None:
    """Strict: an unknown or misspelt field fails, as `kubectl apply` would reject it."""
    kubernetes_validate.validate(MANIFESTS[key], KUBERNETES_VERSION, strict=True)


def test_each_service_has_all_its_objects() -> None:
    kinds = {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"}
    for name in SERVICE_NAMES:
        for kind in kinds:
            assert (kind, f"reactions-{name}") in MANIFESTS, (kind, name)
    assert {kind for kind, _ in MANIFESTS} == kinds | {"ConfigMap", "NetworkPolicy"}


@pytest.mark.parametrize("name", SERVICE_NAMES)
def test_ports_and_probes_match_the_service(name: str) -> None:
    spec = container(name)
    port = default(name, f"{name}_port")
    assert spec["command"] == ["python", "-m", f"services.{name}"]
    assert spec["ports"] == [{"name": "http", "containerPort": port}]
    env = {item["name"]: item["value"] for item in spec["env"] if "value" in item}
    assert env[f"REACTIONS_{name.upper()}_PORT"] == str(port)
    assert env["REACTIONS_HOST"] == "0.0.0.0"
    for probe, path in (
        ("livenessProbe", "/healthz"),
        ("readinessProbe", "/readyz"),
        ("startupProbe", "/healthz"),
    ):
        assert spec[probe]["httpGet"] == {"path": path, "port": "http"}, (name, probe)
    annotations = deployment(name)["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(port)
    assert annotations["prometheus.io/path"] == "/metrics"


@pytest.mark.parametrize("name", SERVICE_NAMES)
def test_env_names_exist_in_the_settings(name: str) -> None:
    spec = container(name)
    unknown = {item["name"] for item in spec["env"]} - env_names(name)
    assert not unknown, f"{name}: {sorted(unknown)}"
    assert spec["envFrom"] == [{"configMapRef": {"name": "reactions-config"}}]


def test_config_map_sets_only_variables_a_service_reads() -> None:
    unknown = set(config_map()) - any_service_env_names()
    assert not unknown, sorted(unknown)
    assert all(isinstance(value, str) for value in config_map().values())


@pytest.mark.parametrize("name", HTTP_SERVICES)
def test_http_services_drain_before_they_stop(name: str) -> None:
    pod = deployment(name)["spec"]["template"]["spec"]
    command = container(name)["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    drain = int(command[1])
    assert drain >= 3
    assert pod["terminationGracePeriodSeconds"] >= drain + graceful_shutdown_seconds(name) + 5


def test_the_aggregator_has_time_to_finish_its_batch() -> None:
    pod = deployment("aggregator")["spec"]["template"]["spec"]
    assert "lifecycle" not in container("aggregator")  # no endpoints to drain
    # A batch is bounded (REACTIONS_MAX_BATCH); the local stack gives it 15 s, allow double.
    assert pod["terminationGracePeriodSeconds"] >= 30


@pytest.mark.parametrize("name", SERVICE_NAMES)
def test_resources_and_security_are_set(name: str) -> None:
    pod = deployment(name)["spec"]["template"]["spec"]
    spec = container(name)
    assert {"cpu", "memory"} <= set(spec["resources"]["requests"])
    assert "memory" in spec["resources"]["limits"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert spec["securityContext"]["allowPrivilegeEscalation"] is False
    assert spec["securityContext"]["readOnlyRootFilesystem"] is True
    assert spec["securityContext"]["capabilities"]["drop"] == ["ALL"]
    mounts = {m["mountPath"] for m in spec["volumeMounts"]}
    assert "/tmp" in mounts  # the only writable path: prometheus-client multiprocess files


@pytest.mark.parametrize("name", SERVICE_NAMES)
def test_selectors_point_at_the_deployment(name: str) -> None:
    pods = deployment(name)["spec"]["template"]["metadata"]["labels"]
    selector = deployment(name)["spec"]["selector"]["matchLabels"]
    assert selector.items() <= pods.items()
    service = MANIFESTS[("Service", f"reactions-{name}")]["spec"]
    assert service["selector"] == selector
    assert service["ports"][0]["targetPort"] == "http"
    assert service["ports"][0]["port"] == default(name, f"{name}_port")
    pdb = MANIFESTS[("PodDisruptionBudget", f"reactions-{name}")]["spec"]
    assert pdb["selector"]["matchLabels"] == selector
    hpa = MANIFESTS[("HorizontalPodAutoscaler", f"reactions-{name}")]["spec"]
    target = hpa["scaleTargetRef"]
    assert (target["kind"], target["name"]) in MANIFESTS
    assert target["apiVersion"] == deployment(name)["apiVersion"]
    assert 1 <= hpa["minReplicas"] <= hpa["maxReplicas"]
    # The PDB must allow an eviction at the HPA's minimum, or node drains block forever.
    if "minAvailable" in pdb:
        assert pdb["minAvailable"] < hpa["minReplicas"]


def test_aggregators_never_outnumber_partitions() -> None:
    hpa = MANIFESTS[("HorizontalPodAutoscaler", "reactions-aggregator")]["spec"]
    assert hpa["maxReplicas"] <= int(config_map()["REACTIONS_PARTITIONS"])


def test_one_image_for_all_three_matching_compose() -> None:
    images = {container(name)["image"] for name in SERVICE_NAMES}
    compose = load_yaml(ROOT / "docker-compose.yml")
    assert images == {compose["services"]["ingest"]["image"]}


def secret_refs(name: str) -> dict[str, tuple[str, str, bool]]:
    """Variable -> (secret, key, optional) of a container's secretKeyRef variables."""
    refs = {}
    for item in container(name)["env"]:
        ref = item.get("valueFrom", {}).get("secretKeyRef")
        if ref:
            refs[item["name"]] = (ref["name"], ref["key"], ref.get("optional", False))
    return refs


def secret_files(name: str) -> dict[str, str]:
    """Mounted file path -> secret name, for a container's Secret volumes."""
    pod = deployment(name)["spec"]["template"]["spec"]
    secrets = {v["name"]: v["secret"] for v in pod["volumes"] if "secret" in v}
    files = {}
    for mount in container(name)["volumeMounts"]:
        secret = secrets.get(mount["name"])
        if secret is None:
            continue
        assert mount.get("readOnly") is True, mount
        for item in secret["items"]:
            files[f"{mount['mountPath']}/{item['path']}"] = secret["secretName"]
    return files


def test_production_settings_and_token_keys_come_from_secrets() -> None:
    config = config_map()
    assert config["REACTIONS_ENV"] == "production"
    assert "*" not in config["REACTIONS_ALLOWED_ORIGINS"]
    assert config["REACTIONS_RATE_LIMIT_STORAGE"].startswith("redis://")
    ingest_env = {i["name"]: i.get("value") for i in container("ingest")["env"]}
    ingest_files, reader_files = secret_files("ingest"), secret_files("reader")
    public = config["REACTIONS_TOKEN_PUBLIC_KEYS_FILE"]
    assert ingest_files[public] == reader_files[public] == "reactions-token-public-keys"
    signing = ingest_env["REACTIONS_TOKEN_SIGNING_KEY_FILE"]
    assert ingest_files[signing] == "reactions-token-signing-key"
    # The salt and the kid are required: a pod without them does not start.
    refs = secret_refs("ingest")
    assert refs["REACTIONS_IP_HASH_SALT"] == ("reactions-secrets", "ip-hash-salt", False)
    assert refs["REACTIONS_TOKEN_SIGNING_KEY_ID"] == (
        "reactions-token-signing-key",
        "kid",
        False,
    )
    # Only ingest signs: the reader and the aggregator never see the signing key.
    assert set(reader_files.values()) == {"reactions-token-public-keys"}
    assert not secret_files("aggregator") and not secret_refs("aggregator")
    assert not secret_refs("reader")


def test_forwarded_for_is_believed_from_the_ingress_controller_only() -> None:
    trusted = [
        ipaddress.ip_network(cidr.strip())
        for cidr in config_map()["REACTIONS_TRUSTED_PROXIES"].split(",")
    ]
    # Narrow: no range wider than a /16 (10.0.0.0/8 let any pod choose its address).
    assert trusted and all(net.prefixlen >= 16 for net in trusted), trusted
    policy = MANIFESTS[("NetworkPolicy", "reactions-ingest")]["spec"]
    assert (
        policy["podSelector"]["matchLabels"]
        == deployment("ingest")["spec"]["selector"]["matchLabels"]
    )
    assert policy["policyTypes"] == ["Ingress"]
    (rule,) = policy["ingress"]
    namespaces = {
        peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
        for peer in rule["from"]
    }
    assert namespaces == {"ingress-nginx", "monitoring"}


# Resident memory per open SSE stream, measured with `.venv/bin/python -m bench.sse_clients
# --clients 5000 --articles-per-stream N`: 10.9 KiB with one article per stream (10.5 KiB
# with --clients 15000), 14.2 KiB with a page's 20 articles. Rounded up from the latter.
STREAM_KIB = 15
# The reader process without streams (about 70 MiB measured), with room for its caches.
READER_BASE_MIB = 128


def mebibytes(quantity: str) -> float:
    """A Kubernetes memory quantity (Ki, Mi, Gi) in MiB."""
    units = {"Ki": 1 / 1024, "Mi": 1, "Gi": 1024}
    return float(quantity[:-2]) * units[quantity[-2:]]


def test_the_reader_pod_holds_its_stream_limit() -> None:
    limit = mebibytes(container("reader")["resources"]["limits"]["memory"])
    max_clients = int(config_map()["REACTIONS_SSE_MAX_CLIENTS"])
    assert READER_BASE_MIB + max_clients * STREAM_KIB / 1024 <= limit, (max_clients, limit)
    per_client = int(config_map()["REACTIONS_SSE_MAX_STREAMS_PER_CLIENT"])
    assert 1 <= per_client < max_clients
