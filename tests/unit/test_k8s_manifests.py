"""deploy/k8s: schema-valid offline, and consistent with the settings and each other."""

from __future__ import annotations

import copy
import importlib.util
import json
import re
from pathlib import Path
from typing import Any

import pytest

from esrag.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
FIELDS = Settings.model_fields


def _load_validator() -> Any:
    spec = importlib.util.spec_from_file_location("k8s_validate", K8S / "validate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


validate = _load_validator()


@pytest.fixture(scope="module")
def docs() -> dict[tuple[str, str], dict[str, Any]]:
    found = {}
    for _, doc in validate.manifests(K8S):
        key = (doc["kind"], doc.get("metadata", {}).get("name", ""))
        assert key not in found, key
        found[key] = doc
    return found


def _default(name: str) -> Any:
    return FIELDS[name].get_default(call_default_factory=True)


def _container(doc: dict[str, Any]) -> dict[str, Any]:
    containers = doc["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def _bytes(quantity: str) -> int:
    number, unit = re.fullmatch(r"(\d+)([KMGT]i)?", quantity).groups()  # type: ignore[union-attr]
    return int(number) * 1024 ** (" KMGT".index(unit[0]) if unit else 0)


def test_every_manifest_is_schema_valid() -> None:
    assert validate.validate_all(K8S) == []


def test_the_expected_kinds_are_there(docs: dict) -> None:
    assert sorted(docs) == [
        ("ConfigMap", "esrag-config"), ("Deployment", "esrag-api"), ("Deployment", "esrag-worker"),
        ("Elasticsearch", "esrag"), ("Kustomization", ""), ("Namespace", "esrag"),
        ("PersistentVolumeClaim", "esrag-documents"), ("ScaledObject", "esrag-worker"),
        ("Secret", "esrag-secrets"), ("Service", "esrag-api"), ("Service", "redis"),
        ("StatefulSet", "redis"),
    ]


@pytest.mark.parametrize(
    ("kind", "name", "path", "value"),
    [
        ("Deployment", "esrag-worker", ["spec", "replicas"], "two"),
        ("Deployment", "esrag-api", ["spec", "template", "spec", "containers", 0, "imagePullPolicyy"], "x"),
        ("StatefulSet", "redis", ["spec", "serviceName"], 5),
        ("Elasticsearch", "esrag", ["spec", "nodeSets", 0, "count"], "3"),
        ("Elasticsearch", "esrag", ["spec", "versions"], "8.19.21"),
        ("ScaledObject", "esrag-worker", ["spec", "triggers", 0, "metadata", "listLength"], 8),
        ("ScaledObject", "esrag-worker", ["spec", "maxReplicaCount"], 0),
        ("Kustomization", "", ["resource"], ["x.yaml"]),
    ],
)
def test_broken_manifests_are_caught(docs: dict, kind: str, name: str, path: list, value: Any) -> None:
    doc = copy.deepcopy(docs[(kind, name)])
    target = doc
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    assert validate.validate_doc(doc) != []


def test_redis_trigger_needs_list_name(docs: dict) -> None:
    doc = copy.deepcopy(docs[("ScaledObject", "esrag-worker")])
    del doc["spec"]["triggers"][0]["metadata"]["listName"]
    assert validate.validate_doc(doc) == ["spec/triggers/0/metadata: 'listName' is a required property"]


def test_every_esrag_variable_is_a_settings_field(docs: dict) -> None:
    names = set().union(*(validate.esrag_variables(d) for d in docs.values()))
    assert {"ESRAG_ES_URL", "ESRAG_REDIS_URL", "ESRAG_QUEUE", "ESRAG_ES_PASSWORD"} <= names
    assert sorted(n for n in names if n[len("ESRAG_"):].lower() not in FIELDS) == []


def test_config_values_validate(docs: dict) -> None:
    data = docs[("ConfigMap", "esrag-config")]["data"]
    assert all(isinstance(v, str) for v in data.values())
    values = {k[len("ESRAG_"):].lower(): v for k, v in data.items()}
    values = {k: (json.loads(v) if v.startswith("[") else v) for k, v in values.items()}
    settings = Settings.model_validate(values)
    assert (settings.shards, settings.replicas) == (3, 1)
    assert settings.es_url == "https://esrag-es-http:9200"


def test_kustomization_lists_every_manifest(docs: dict) -> None:
    listed = docs[("Kustomization", "")]["resources"]
    files = sorted(p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
    assert sorted(listed) == files


def test_elasticsearch_sizing(docs: dict) -> None:
    es = docs[("Elasticsearch", "esrag")]["spec"]
    assert es["version"] == _default("es_version")
    (node_set,) = es["nodeSets"]
    assert node_set["count"] == 3
    container = node_set["podTemplate"]["spec"]["containers"][0]
    opts = {o[:4]: o[4:] for o in container["env"][0]["value"].split()}  # -Xms4g -Xmx4g
    assert opts["-Xms"] == opts["-Xmx"]
    heap = _bytes(opts["-Xmx"].replace("g", "Gi").replace("m", "Mi"))
    limit = _bytes(container["resources"]["limits"]["memory"])
    assert heap * 2 <= limit and heap <= 30 * 1024**3
    assert node_set["volumeClaimTemplates"][0]["metadata"]["name"] == "elasticsearch-data"


def test_keda_scales_the_workers_on_the_queue(docs: dict) -> None:
    scaled = docs[("ScaledObject", "esrag-worker")]["spec"]
    worker = docs[("Deployment", scaled["scaleTargetRef"]["name"])]
    assert _container(worker)["args"] == ["worker"]
    (trigger,) = scaled["triggers"]
    assert trigger["type"] == "redis"
    queue = docs[("ConfigMap", "esrag-config")]["data"]["ESRAG_QUEUE"]
    assert trigger["metadata"]["listName"] == queue == _default("queue") == "ingest"
    redis_svc = docs[("Service", "redis")]
    host, port = trigger["metadata"]["address"].split(":")
    assert host.split(".")[0] == redis_svc["metadata"]["name"]
    assert int(port) == redis_svc["spec"]["ports"][0]["port"] == 6379


def test_redis_is_persistent_with_aof(docs: dict) -> None:
    redis = docs[("StatefulSet", "redis")]
    args = _container(redis)["args"]
    assert args[args.index("--appendonly") + 1] == "yes"
    data_dir = args[args.index("--dir") + 1]
    mounts = {m["name"]: m["mountPath"] for m in _container(redis)["volumeMounts"]}
    (claim,) = redis["spec"]["volumeClaimTemplates"]
    assert mounts[claim["metadata"]["name"]] == data_dir
    url = docs[("ConfigMap", "esrag-config")]["data"]["ESRAG_REDIS_URL"]
    assert url == f"redis://{redis['spec']['serviceName']}:6379/0"


def test_api_service_reaches_the_api_pods(docs: dict) -> None:
    api = docs[("Deployment", "esrag-api")]
    svc = docs[("Service", "esrag-api")]["spec"]
    labels = api["spec"]["template"]["metadata"]["labels"]
    assert svc["selector"].items() <= labels.items()
    container = _container(api)
    assert container["args"][:3] == ["serve", "--host", "0.0.0.0"]
    (port,) = container["ports"]
    assert svc["ports"][0]["targetPort"] == port["name"]
    data = docs[("ConfigMap", "esrag-config")]["data"]
    assert int(data["ESRAG_API_PORT"]) == port["containerPort"] == _default("api_port")
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": port["name"]}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": port["name"]}
    secret = docs[("Secret", "esrag-secrets")]["stringData"]
    assert json.loads(secret["ESRAG_API_KEYS"])  # serve refuses 0.0.0.0 without keys
    assert {"secretRef": {"name": "esrag-secrets"}} in container["envFrom"]


def test_esrag_pods_get_the_eck_credentials(docs: dict) -> None:
    ca = docs[("ConfigMap", "esrag-config")]["data"]["ESRAG_ES_CA_CERTS"]
    for name in ("esrag-worker", "esrag-api"):
        pod = docs[("Deployment", name)]["spec"]["template"]["spec"]
        container = pod["containers"][0]
        env = {e["name"]: e for e in container["env"]}
        ref = env["ESRAG_ES_PASSWORD"]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": "esrag-es-elastic-user", "key": "elastic"}  # ECK: <cluster>-es-elastic-user
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert volumes["es-ca"]["secret"]["secretName"] == "esrag-es-http-certs-public"
        assert ca == f"{mounts['es-ca']}/ca.crt"
        assert {"configMapRef": {"name": "esrag-config"}} in container["envFrom"]
