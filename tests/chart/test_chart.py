"""Tests of the Helm chart, the Dockerfile and .dockerignore (issue 5).

Offline: Helm v4 runs embedded in helm-python-sdk, Kubernetes schemas come
from kubernetes-validate. The operator binary is the single source of truth
for RBAC rules and configuration flags; its path is $OPERATOR_BIN (default
target/debug/redis-cache-operator, relative to the repository root).

    python3 -m venv .venv-chart
    .venv-chart/bin/pip install -r tests/chart/requirements.txt
    cargo build
    .venv-chart/bin/python -m pytest tests/chart -q
"""

from __future__ import annotations

import copy
import functools
import json
import os
import re
import shlex
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import helm_python as helm
import jsonschema
import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "redis-cache-operator"
CRD = ROOT / "crds" / "rediscache.dev_rediscaches.yaml"
CLASS_CRD = ROOT / "crds" / "rediscache.dev_rediscacheclasses.yaml"
CRDS = [CLASS_CRD, CRD]  # sorted by file name, as Helm loads them
EKS_VALUES = ROOT / "examples" / "eks-values.yaml"
APP_EXAMPLE = ROOT / "examples" / "app-deployment.yaml"
RELEASE = "redis-cache-operator"
NAMESPACE = "redis-cache-operator"
# The oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and the
# newest kubernetes-validate knows.
KUBE_VERSIONS = ["1.28.0", "1.37.0"]
# Environment variables the Deployment takes from the downward API.
DOWNWARD_API_ENV = {"POD_NAME": "metadata.name", "POD_NAMESPACE": "metadata.namespace"}
# Flags that are coming to the operator; the chart sets them already.
UPCOMING_ENV = {"AWS_RATE_LIMIT", "AWS_BURST"}
PROMETHEUS_OPERATOR_GROUP = "monitoring.coreos.com"
OPERATOR_GROUP = "rediscache.dev"
DEFAULT_CLASS_ANNOTATION = "rediscache.dev/is-default-class"
# `run` flags the operator no longer has: region, network and cache defaults
# moved into RedisCacheClasses. The chart must not render them.
REMOVED_ENV = {"AWS_REGION", "DEFAULT_ENGINE", "DEFAULT_NODE_TYPE", "DEFAULT_SUBNET_GROUP_NAME",
               "DEFAULT_SUBNET_IDS", "DEFAULT_ALLOWED_CIDRS", "DEFAULT_ALLOWED_SECURITY_GROUP_IDS",
               "DEFAULT_SECURITY_GROUP_IDS", "DEFAULT_DELETION_POLICY"}
# Values render() puts under whatever values a test gives. None: the chart's
# default class is a Kubernetes class, which needs no value (only an
# ElastiCache class needs a region; see ELASTICACHE_VALUES).
REQUIRED_VALUES: dict[str, Any] = {}
# The smallest ElastiCache install: the provider and the one value it has no
# usable default for, the region.
ELASTICACHE_VALUES = {"defaultClass": {"provider": "ElastiCache", "elastiCache": {"region": "us-east-1"}}}
DEV_EXAMPLE = ROOT / "examples" / "dev.yaml"
# The operator's defaults for a Kubernetes class (documented in values.yaml).
DEFAULT_VALKEY_IMAGE = "valkey/valkey:8.1"
DEFAULT_REDIS_IMAGE = "redis:7.4"
DEFAULT_EXPORTER_IMAGE = "oliver006/redis_exporter:v1.67.0"


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------


def eks_values() -> dict[str, Any]:
    return yaml.safe_load(EKS_VALUES.read_text())


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def full_values() -> dict[str, Any]:
    """EKS values plus every optional feature and every optional flag set."""
    return deep_merge(
        eks_values(),
        {
            "aws": {"endpointUrl": "https://elasticache.eu-west-1.amazonaws.com", "rateLimit": 2.5, "burst": 7},
            "defaultClass": {
                "name": "eu-west-1",
                "allowedNamespaces": ["shop", "payments"],
                "allowedNamespaceSelector": {"matchLabels": {"team": "payments"}},
                "defaults": {"memory": "1Gi", "evictionPolicy": "volatile-lru"},
                "elastiCache": {
                    "securityGroupIds": ["sg-0fedcba9876543210"],
                    "endpointUrl": "https://vpce-0a1b2c3d.elasticache.eu-west-1.vpce.amazonaws.com",
                    "roleArn": "arn:aws:iam::210987654321:role/caches",
                    "nodeFamily": "r7g",
                    "kmsKeyId": "arn:aws:kms:eu-west-1:123456789012:key/0a1b2c3d-0000-4000-8000-0123456789ab",
                    "tags": {"cost-center": "platform", "team": "payments"},
                },
            },
            "watchNamespaces": ["shop", "payments"],
            "leaderElection": {"leaseName": "rco-leader"},
            "prometheusRule": {"healthAlerts": {"enabled": True}},
            "healthProbe": {"interval": "2m", "timeout": "3s", "concurrency": 4, "statusMinInterval": "10m",
                            "ca": {"configMap": "corp-ca", "key": "bundle.pem"}},
            "extraEnv": [{"name": "AWS_STS_REGIONAL_ENDPOINTS", "value": "regional"}],
        },
    )


@functools.lru_cache(maxsize=None)
def _chart() -> helm.Chart:
    return helm.Chart.load(CHART)


@functools.lru_cache(maxsize=None)
def _render(values_json: str) -> tuple[tuple[str, str], ...]:
    values = json.loads(values_json)
    out = _chart().render(values=values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    return tuple(sorted(out.items()))


def kubernetes_values() -> dict[str, Any]:
    """A Kubernetes default class with every defaultClass.kubernetes value set."""
    return {"defaultClass": {
        "name": "in-cluster",
        "defaults": {"engine": "redis", "memory": "512Mi", "evictionPolicy": "allkeys-lfu"},
        "kubernetes": {
            "valkeyImage": "registry.example.com/mirror/valkey/valkey:8.1",
            "redisImage": "registry.example.com:5000/mirror/redis:7.4",
            "storageClassName": "gp3",
            "resources": {"requests": {"cpu": "250m", "memory": "768Mi"}, "limits": {"memory": "1Gi"}},
            "nodeSelector": {"kubernetes.io/os": "linux", "node-pool": "caches"},
            "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "caches", "effect": "NoSchedule"}],
            "exporter": {"enabled": True, "image": "registry.example.com/mirror/oliver006/redis_exporter:v1.67.0"},
            "networkPolicy": False,
            "tls": {"issuerRef": {"name": "team-ca", "kind": "ClusterIssuer", "group": "cert-manager.io"}},
        },
    }}


def render_files(values: dict[str, Any] | None = None) -> dict[str, str]:
    """The chart rendered with `values` over REQUIRED_VALUES."""
    return dict(_render(json.dumps(deep_merge(REQUIRED_VALUES, values or {}), sort_keys=True)))


def render(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Rendered manifests (templates only; CRDs are in crds/) as objects."""
    docs = []
    for path, text in render_files(values).items():
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                doc.setdefault("_template", path)
                docs.append(doc)
    return docs


def strip(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k != "_template"}


def of_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = of_kind(docs, kind)
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    containers = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def env_of(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    env = container(docs).get("env", [])
    names = [e["name"] for e in env]
    assert len(names) == len(set(names)), f"duplicate env vars: {names}"
    return {e["name"]: e for e in env}


def triples(rules: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    out = set()
    for rule in rules:
        for group in rule.get("apiGroups", []):
            for resource in rule.get("resources", []):
                for verb in rule.get("verbs", []):
                    out.add((group, resource, verb))
    return out


def operator_roles(docs: list[dict[str, Any]]) -> list[tuple[dict[str, Any], str | None]]:
    """(Cluster)Roles bound to the operator's ServiceAccount, with the
    namespace the binding grants them in (None: cluster-wide)."""
    sa = one(docs, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"]
    roles = {(d["kind"], d["metadata"]["name"], d["metadata"].get("namespace")): d
             for d in docs if d["kind"] in ("Role", "ClusterRole")}
    out = []
    for binding in docs:
        if binding["kind"] not in ("RoleBinding", "ClusterRoleBinding"):
            continue
        if not any(s["kind"] == "ServiceAccount" and s["name"] == sa and s["namespace"] == NAMESPACE
                   for s in binding["subjects"]):
            continue
        ref = binding["roleRef"]
        ns = binding["metadata"].get("namespace") if binding["kind"] == "RoleBinding" else None
        role_ns = ns if ref["kind"] == "Role" else None
        key = (ref["kind"], ref["name"], role_ns)
        assert key in roles, f"{binding['kind']} {binding['metadata']['name']} refers to missing {key}"
        out.append((roles[key], ns))
    return out


def operator_bin() -> Path:
    raw = os.environ.get("OPERATOR_BIN", "target/debug/redis-cache-operator")
    path = Path(raw)
    if not path.is_absolute():
        path = ROOT / path
    if not path.is_file() or not os.access(path, os.X_OK):
        pytest.fail(
            f"operator binary not found at {path}: build it first (`cargo build`) "
            "or point OPERATOR_BIN at it (e.g. OPERATOR_BIN=target/release/redis-cache-operator)",
            pytrace=False,
        )
    return path


@functools.lru_cache(maxsize=None)
def run_operator(*args: str) -> str:
    proc = subprocess.run([str(operator_bin()), *args], capture_output=True, text=True, timeout=60,
                          env={**{k: v for k, v in os.environ.items() if k not in ("COLUMNS",)}, "NO_COLOR": "1"})
    assert proc.returncode == 0, f"`redis-cache-operator {' '.join(args)}` failed: {proc.stderr}"
    return proc.stdout


def binary_rules() -> list[dict[str, Any]]:
    return json.loads(run_operator("rbac"))


def binary_env_vars() -> set[str]:
    help_text = run_operator("run", "--help")
    found = set(re.findall(r"\[env:\s*([A-Z0-9_]+)=", help_text))
    assert found, f"no [env: X=] in `run --help`:\n{help_text}"
    return found


def default_class(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return one(docs, "RedisCacheClass")


def write_manifests(path: Path, *docs: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump_all([strip(d) for d in docs], sort_keys=False))
    return path


@functools.lru_cache(maxsize=None)
def _crd(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def cluster_scoped_resources() -> set[tuple[str, str]]:
    """(group, plural) of every cluster-scoped CRD in crds/, and Namespaces
    (read for a class's allowedNamespaceSelector)."""
    return {(c["spec"]["group"], c["spec"]["names"]["plural"])
            for c in map(_crd, CRDS) if c["spec"]["scope"] == "Cluster"} | {("", "namespaces")}


def is_cluster_scoped(triple: tuple[str, str, str]) -> bool:
    group, resource, _verb = triple
    return (group, resource.split("/")[0]) in cluster_scoped_resources()


def _strict(schema: Any) -> Any:
    """An openAPIV3Schema as JSON Schema the way the API server applies it to
    a structural schema: unknown fields are errors here (the server would
    prune them silently), except under x-kubernetes-preserve-unknown-fields."""
    if isinstance(schema, list):
        return [_strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _strict(v) for k, v in schema.items()}
    if (out.get("type") == "object" and "additionalProperties" not in out
            and not schema.get("x-kubernetes-preserve-unknown-fields")):
        out["additionalProperties"] = False
    return out


def crd_validator(path: Path) -> tuple[dict[str, Any], jsonschema.Draft7Validator]:
    crd = _crd(path)
    (version,) = crd["spec"]["versions"]
    schema = _strict(version["schema"]["openAPIV3Schema"])
    schema["properties"] |= {
        "apiVersion": {"type": "string", "enum": [f"{crd['spec']['group']}/{version['name']}"]},
        "kind": {"type": "string", "enum": [crd["spec"]["names"]["kind"]]},
        "metadata": {"type": "object"},
    }
    schema["required"] = sorted({*schema.get("required", []), "apiVersion", "kind", "metadata"})
    return crd, jsonschema.Draft7Validator(schema)


def cel_rules(schema: Any) -> set[str]:
    if isinstance(schema, list):
        return set().union(*map(cel_rules, schema)) if schema else set()
    if not isinstance(schema, dict):
        return set()
    found = {v["rule"] for v in schema.get("x-kubernetes-validations", [])}
    return found.union(*(cel_rules(v) for k, v in schema.items() if k != "x-kubernetes-validations"))


# The RedisCacheClass CRD's CEL rules (x-kubernetes-validations), which JSON
# Schema cannot run: class_cel_errors checks them by hand. A new rule in the
# CRD fails test_default_class_validates_against_the_crd until it is added.
CLASS_CEL_RULES = {
    "has(self.elastiCache) == (self.provider == 'ElastiCache') && has(self.kubernetes) == "
    "(self.provider == 'Kubernetes') && has(self.upstash) == (self.provider == 'Upstash') && "
    "has(self.azure) == (self.provider == 'Azure')",
    "self.provider == oldSelf.provider",  # a transition rule: no old object on create
    "!(has(self.subnetGroupName) && has(self.subnetIds))",
    "self.all(c, !c.endsWith('/0'))",
    # spec.azure.credentials; the chart renders no Azure class (it needs credentials)
    "(self.type == 'ClientSecret') == has(self.clientSecretRef)",
}


def class_cel_errors(spec: dict[str, Any]) -> list[str]:
    errors = []
    blocks = {"ElastiCache": "elastiCache", "Kubernetes": "kubernetes", "Upstash": "upstash", "Azure": "azure"}
    for provider, block in blocks.items():
        if (block in spec) != (spec.get("provider") == provider):
            errors.append(f"spec: set exactly one provider block, the one spec.provider names ({block})")
    ec = spec.get("elastiCache") or {}
    if "subnetGroupName" in ec and "subnetIds" in ec:
        errors.append("spec.elastiCache: set either subnetGroupName or subnetIds, not both")
    if any(c.endswith("/0") for c in ec.get("allowedCidrs", [])):
        errors.append("spec.elastiCache.allowedCidrs must not contain a /0 block")
    return errors


def assert_valid_class(doc: dict[str, Any]) -> None:
    crd, validator = crd_validator(CLASS_CRD)
    assert cel_rules(crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]) == CLASS_CEL_RULES, \
        "the RedisCacheClass CRD's CEL rules changed; update CLASS_CEL_RULES and class_cel_errors"
    body = strip(doc)
    errors = [f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
              for e in validator.iter_errors(body)]
    errors += class_cel_errors(body.get("spec", {}))
    assert not errors, f"RedisCacheClass {doc['metadata']['name']} is invalid against the CRD:\n" + "\n".join(errors)


VALUE_SETS = {
    "defaults": REQUIRED_VALUES,  # the chart's own defaults: a Kubernetes class
    "kubernetes": "kubernetes",  # every defaultClass.kubernetes value set
    "kubernetes-watch": {"watchNamespaces": ["shop", "payments"]},
    "elasticache-minimal": ELASTICACHE_VALUES,  # provider ElastiCache and its region, nothing else
    "no-class": {"defaultClass": {"create": False}},
    "eks": "eks",
    "full": "full",
    "single-replica": {"replicaCount": 1, "leaderElection": {"enabled": False}},
    "rbac-off": {"rbac": {"create": False}, "serviceAccount": {"create": False, "name": "existing"}},
}


def values_for(name: str) -> dict[str, Any]:
    v = VALUE_SETS[name]
    if v == "eks":
        return eks_values()
    if v == "full":
        return full_values()
    if v == "kubernetes":
        return kubernetes_values()
    return copy.deepcopy(v)


# --------------------------------------------------------------------------
# chart metadata, lint, render, offline validation
# --------------------------------------------------------------------------


def test_chart_metadata_matches_crate():
    meta = _chart().metadata
    assert meta["apiVersion"] == "v2"
    assert meta["name"] == "redis-cache-operator"
    crate = tomllib.loads((ROOT / "Cargo.toml").read_text())["package"]
    assert meta["appVersion"] == crate["version"], "Chart.yaml appVersion must be the crate version"


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
@pytest.mark.parametrize("values_name", sorted(VALUE_SETS))
def test_lint_strict(values_name, kube_version):
    report = helm.lint(CHART, values_for(values_name), strict=True, namespace=NAMESPACE,
                       kube_version=f"v{kube_version}")
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert not report["errors"] and not problems, json.dumps(report, indent=2)


@pytest.mark.parametrize("values_name", sorted(VALUE_SETS))
def test_renders(values_name):
    docs = render(values_for(values_name))
    kinds = {d["kind"] for d in docs}
    assert {"Deployment", "Service"} <= kinds
    for d in docs:
        assert d["metadata"]["name"], d
        if d["kind"] in ("ClusterRole", "ClusterRoleBinding", "RedisCacheClass"):
            assert "namespace" not in d["metadata"], f"{d['kind']} is cluster-scoped"
        else:
            assert d["metadata"].get("namespace"), f"{d['kind']} {d['metadata']['name']} has no namespace"


def test_default_render_has_the_expected_objects():
    docs = render()
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == sorted([
        "ClusterRole", "ClusterRole", "ClusterRole",  # operator, aggregated view and edit
        "ClusterRoleBinding", "Deployment", "PodDisruptionBudget", "RedisCacheClass", "Role", "RoleBinding",
        "Service", "ServiceAccount",
    ])


def test_full_render_has_every_optional_object():
    kinds = {d["kind"] for d in render(full_values())}
    assert {"ServiceMonitor", "PrometheusRule", "NetworkPolicy", "PodDisruptionBudget"} <= kinds


def _validate(doc: dict[str, Any], version: str) -> None:
    try:
        kubernetes_validate.validate(strip(doc), version, strict=True)
    except kubernetes_validate.ValidationError as e:
        path = ".".join(str(p) for p in e.path)
        pytest.fail(f"{doc['kind']} {doc['metadata']['name']} ({doc.get('_template')}) is invalid "
                    f"for Kubernetes {version}: {path}: {e.message}")


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
@pytest.mark.parametrize("values_name", sorted(VALUE_SETS))
def test_builtin_kinds_validate_offline(values_name, kube_version):
    docs = render(values_for(values_name))
    checked = 0
    for doc in docs:
        group = doc["apiVersion"].split("/")[0] if "/" in doc["apiVersion"] else ""
        if group == PROMETHEUS_OPERATOR_GROUP:
            continue  # not a built-in kind; see test_prometheus_operator_objects
        if group == OPERATOR_GROUP:
            continue  # the operator's own kind; see test_default_class_validates_against_the_crd
        _validate(doc, kube_version)  # a schema-less built-in kind fails here too
        checked += 1
    assert checked >= 3  # Deployment, Service, PodDisruptionBudget at least


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
def test_chart_crd_validates_offline(kube_version):
    for crd in _chart().crds:
        doc = yaml.safe_load(crd["data"])
        doc["_template"] = crd["filename"]
        _validate(doc, kube_version)


def test_prometheus_operator_objects():
    docs = render(full_values())
    sm = one(docs, "ServiceMonitor")
    assert sm["apiVersion"] == "monitoring.coreos.com/v1"
    svc = one(docs, "Service")
    svc_labels = svc["metadata"]["labels"]
    assert all(svc_labels.get(k) == v for k, v in sm["spec"]["selector"]["matchLabels"].items())
    port_names = {p["name"] for p in svc["spec"]["ports"]}
    assert [e["port"] for e in sm["spec"]["endpoints"]] == ["http-metrics"]
    assert "http-metrics" in port_names
    assert sm["spec"]["endpoints"][0]["path"] == "/metrics"
    assert sm["spec"]["namespaceSelector"]["matchNames"] == [NAMESPACE]

    pr = one(docs, "PrometheusRule")
    assert pr["apiVersion"] == "monitoring.coreos.com/v1"
    for group in pr["spec"]["groups"]:
        for rule in group["rules"]:
            assert set(rule) <= {"alert", "expr", "for", "labels", "annotations", "record", "keep_firing_for"}
            assert rule["expr"].count("(") == rule["expr"].count(")"), rule["expr"]
            assert rule["expr"].count("{") == rule["expr"].count("}"), rule["expr"]
            assert re.fullmatch(r"[0-9]+[smhdwy]", rule["for"]), rule["for"]
            assert rule["labels"]["severity"]
            assert rule["annotations"]["summary"] and rule["annotations"]["description"]


# --------------------------------------------------------------------------
# examples/app-deployment.yaml: an application reading the connection Secret
# --------------------------------------------------------------------------


def app_example_docs() -> list[dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all(APP_EXAMPLE.read_text()) if d]
    for d in docs:
        d["_template"] = str(APP_EXAMPLE.relative_to(ROOT))
    return docs


def secret_refs(pod_spec: dict[str, Any]) -> tuple[set[str], list[tuple[str, str, bool]]]:
    """Secrets a pod takes whole (envFrom) and single keys it takes
    (secretKeyRef) as (secret, key, optional), over all containers."""
    whole, keys = set(), []
    for c in pod_spec.get("initContainers", []) + pod_spec["containers"]:
        for source in c.get("envFrom", []):
            if "secretRef" in source:
                whole.add(source["secretRef"]["name"])
        for var in c.get("env", []):
            ref = var.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                keys.append((ref["name"], ref["key"], bool(ref.get("optional", False))))
    return whole, keys


def planned_secret(path: Path, class_path: Path) -> dict[str, Any]:
    """The Secret `plan` says the operator writes for the one RedisCache in
    `path`, placed by the RedisCacheClass in `class_path`."""
    plans = json.loads(run_operator("plan", "-o", "json", "-f", str(path), "-f", str(class_path)))
    assert len(plans) == 1, plans
    assert not plans[0].get("errors"), plans[0]
    return plans[0]["secret"]


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
def test_app_example_deployment_validates_offline(kube_version):
    docs = app_example_docs()
    assert {d["kind"] for d in docs} == {"RedisCache", "Deployment"}
    for doc in of_kind(docs, "Deployment"):
        _validate(doc, kube_version)


def test_app_example_reads_only_keys_the_operator_writes(tmp_path):
    docs = app_example_docs()
    cache = one(docs, "RedisCache")
    class_file = write_manifests(tmp_path / "class.yaml", default_class(render(eks_values())))
    secret = planned_secret(APP_EXAMPLE, class_file)
    assert secret["name"] == cache["spec"]["connectionSecret"]["name"]
    written = set(secret["keys"])
    # The extraKeys are in the plan, next to the operator's own keys.
    assert set(cache["spec"]["connectionSecret"]["extraKeys"]) <= written
    assert {"uri", "host", "port", "password", "tls"} <= written

    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    whole, keys = secret_refs(pod)
    assert whole == {secret["name"]}, "envFrom takes the cache's Secret"
    assert keys, "the example shows secretKeyRef too"
    for name, key, _optional in keys:
        assert name == secret["name"], f"secretKeyRef to {name}, not the cache's Secret"
        assert key in written, f"secretKeyRef key {key!r} is not a key the operator writes: {sorted(written)}"
    # Pods that need the endpoint wait until the Secret is complete; only keys
    # that may legitimately be absent (no reader endpoint) are optional.
    assert {k for _, k, optional in keys if optional} <= {"readerHost", "readerUri"}
    namespaces = {d["metadata"].get("namespace") for d in docs}
    assert len(namespaces) == 1 and None not in namespaces, "a Secret is read from its own namespace only"


# --------------------------------------------------------------------------
# Deployment
# --------------------------------------------------------------------------


@pytest.mark.parametrize("values_name", sorted(VALUE_SETS))
def test_deployment_is_locked_down(values_name):
    docs = render(values_for(values_name))
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    c = container(docs)
    psc, csc = pod.get("securityContext", {}), c.get("securityContext", {})

    def effective(key):
        return csc.get(key, psc.get(key))

    assert effective("runAsNonRoot") is True
    assert effective("runAsUser") not in (None, 0), "run as an explicit non-root UID"
    assert csc.get("readOnlyRootFilesystem") is True
    assert csc.get("allowPrivilegeEscalation") is False
    assert csc.get("privileged") in (None, False)
    assert csc.get("capabilities", {}).get("drop") == ["ALL"]
    assert not csc.get("capabilities", {}).get("add")
    assert effective("seccompProfile") == {"type": "RuntimeDefault"}
    assert not pod.get("hostNetwork") and not pod.get("hostPID") and not pod.get("hostIPC")
    assert not any("hostPath" in v for v in pod.get("volumes", []))
    assert c["resources"]["requests"] and c["resources"]["limits"]["memory"]


def test_deployment_defaults():
    docs = render()
    deploy = one(docs, "Deployment")
    c = container(docs)
    assert deploy["spec"]["replicas"] == 2
    assert env_of(docs)["LEADER_ELECTION"]["value"] == "true"
    port = {p["name"]: p["containerPort"] for p in c["ports"]}["http"]
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["livenessProbe"]["httpGet"]["port"] in ("http", port)
    assert env_of(docs)["HTTP_ADDR"]["value"] == f"0.0.0.0:{port}"
    assert c["image"].endswith(":" + _chart().metadata["appVersion"])
    assert c.get("args", ["run"]) == ["run"]
    spread = deploy["spec"]["template"]["spec"]["topologySpreadConstraints"]
    assert {s["topologyKey"] for s in spread} == {"topology.kubernetes.io/zone", "kubernetes.io/hostname"}
    selector = deploy["spec"]["selector"]["matchLabels"]
    assert all(s["labelSelector"]["matchLabels"] == selector for s in spread)


def test_downward_api_env():
    env = env_of(render())
    for name, field in DOWNWARD_API_ENV.items():
        assert env[name]["valueFrom"]["fieldRef"]["fieldPath"] == field
        assert "value" not in env[name]


def test_every_run_flag_is_settable_from_values():
    wanted = binary_env_vars() | UPCOMING_ENV
    rendered = env_of(render(full_values()))
    missing = sorted(wanted - set(rendered))
    assert not missing, f"run flags with no value in the chart: {missing}"
    for name in wanted - set(DOWNWARD_API_ENV):
        assert rendered[name].get("value"), f"{name} should be set from a value, got {rendered[name]}"
    for name in DOWNWARD_API_ENV:
        assert "fieldRef" in rendered[name].get("valueFrom", {}), f"{name} must come from the downward API"


@pytest.mark.parametrize("values_name", sorted(VALUE_SETS))
def test_only_flags_the_operator_has_are_rendered(values_name):
    """The region, network and cache defaults left `run` for the
    RedisCacheClass: none of the removed variables is rendered, and every
    variable the chart sets (but extraEnv) is one `run --help` lists."""
    values = values_for(values_name)
    env = env_of(render(values))
    assert not REMOVED_ENV & set(env), f"removed flags still rendered: {sorted(REMOVED_ENV & set(env))}"
    extra = {e["name"] for e in values.get("extraEnv", [])}
    unknown = set(env) - extra - binary_env_vars() - UPCOMING_ENV
    assert not unknown, f"the chart sets variables `run` does not know: {sorted(unknown)}"


def test_values_reach_the_environment():
    values = full_values()
    env = {k: v.get("value") for k, v in env_of(render(values)).items()}
    assert env["CLUSTER_NAME"] == values["clusterName"]
    assert env["AWS_ENDPOINT_URL"] == values["aws"]["endpointUrl"]
    assert env["AWS_RATE_LIMIT"] == "2.5"
    assert env["AWS_BURST"] == "7"
    assert env["WATCH_NAMESPACES"] == "shop,payments"
    assert env["CONCURRENCY"] == str(values["concurrency"])
    assert env["POLL_INTERVAL_TRANSITION"] == values["pollInterval"]["transition"]
    assert env["POLL_INTERVAL_SETTLED"] == values["pollInterval"]["settled"]
    assert env["LEASE_NAME"] == "rco-leader"
    assert env["LOG_FORMAT"] == "json" and env["LOG_LEVEL"] == "info"
    assert env["AWS_STS_REGIONAL_ENDPOINTS"] == "regional"



def test_health_probe_values_reach_the_environment_and_mount_the_ca():
    docs = render(full_values())
    env = {k: v.get("value") for k, v in env_of(docs).items()}
    assert env["HEALTH_PROBE"] == "true"
    assert env["HEALTH_INTERVAL"] == "2m" and env["HEALTH_TIMEOUT"] == "3s"
    assert env["HEALTH_CONCURRENCY"] == "4" and env["HEALTH_STATUS_MIN_INTERVAL"] == "10m"
    assert env["HEALTH_CA_FILE"] == "/etc/redis-cache-operator/health-ca/bundle.pem"
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    assert pod["volumes"] == [{"name": "health-ca", "configMap": {
        "name": "corp-ca", "items": [{"key": "bundle.pem", "path": "bundle.pem"}]}}]
    assert container(docs)["volumeMounts"] == [
        {"name": "health-ca", "mountPath": "/etc/redis-cache-operator/health-ca", "readOnly": True}]
    off = render({"healthProbe": {"enabled": False}})
    assert env_of(off)["HEALTH_PROBE"]["value"] == "false"
    assert "HEALTH_CA_FILE" not in env_of(off)
    assert "volumes" not in one(off, "Deployment")["spec"]["template"]["spec"]


def test_health_alerts_use_the_exported_metric_names():
    rule = one(render(full_values()), "PrometheusRule")
    exprs = " ".join(r["expr"] for g in rule["spec"]["groups"] for r in g["rules"])
    for metric in ("redis_cache_used_memory_bytes", "redis_cache_max_memory_bytes",
                   "redis_cache_hit_ratio", "redis_cache_evicted_keys"):
        assert metric in exprs, f"{metric} not alerted on"
    assert "redis_cache_operator_cache_" not in exprs

def test_unset_optional_values_leave_the_variable_out():
    """An empty env var is not "unset" to the operator: it would read an
    empty subnet group name or a list with one empty item."""
    env = env_of(render())
    for name, var in env.items():
        assert "valueFrom" in var or var.get("value"), f"{name} is set to an empty value"
    for name in ("AWS_ENDPOINT_URL", "HEALTH_CA_FILE", "WATCH_NAMESPACES"):
        assert name not in env


def test_env_values_are_accepted_by_the_operator(tmp_path):
    """The rendered environment and the rendered class work together: `plan`
    shares CLUSTER_NAME and the log variables with `run`; give it those, the
    rendered default RedisCacheClass and a cache that sets no network, and
    the class's values must show in the plan."""
    values = eks_values()
    docs = render(values)
    env = {k: v["value"] for k, v in env_of(docs).items() if "value" in v}
    plan_env = {k: v for k, v in env.items() if k in ("CLUSTER_NAME", "LOG_FORMAT", "LOG_LEVEL")}
    cache = write_manifests(tmp_path / "cache.yaml", {
        "apiVersion": "rediscache.dev/v1alpha1", "kind": "RedisCache",
        "metadata": {"name": "sessions", "namespace": "shop"}, "spec": {}})
    class_file = write_manifests(tmp_path / "class.yaml", default_class(docs))
    proc = subprocess.run([str(operator_bin()), "plan", "-f", str(cache), "-f", str(class_file)],
                          capture_output=True, text=True, timeout=60,
                          env={"PATH": os.environ.get("PATH", ""), **plan_env})
    assert proc.returncode == 0, f"plan rejected the chart's environment or class:\n{proc.stdout}\n{proc.stderr}"
    assert "built-in default" not in proc.stdout, f"plan did not use the rendered class:\n{proc.stdout}"
    ec = values["defaultClass"]["elastiCache"]
    for expected in [f"class              {values['defaultClass']['name']} (provider ElastiCache)",
                     *ec["subnetIds"], *ec["allowedCidrs"], *ec["allowedSecurityGroupIds"],
                     *(f"{k}={v}" for k, v in ec["tags"].items()),
                     values["clusterName"], ec["nodeType"], values["defaultClass"]["defaults"]["engine"],
                     "final snapshot"]:  # deletionPolicy Snapshot
        assert expected in proc.stdout, f"{expected} from the values is not in the plan:\n{proc.stdout}"


def _plan(tmp_path: Path, cache: Path, cls: dict[str, Any]) -> dict[str, Any]:
    class_file = write_manifests(tmp_path / "class.yaml", cls)
    plans = json.loads(run_operator("plan", "-o", "json", "-f", str(cache), "-f", str(class_file)))
    assert len(plans) == 1, plans
    assert not plans[0].get("errors"), plans[0]
    return plans[0]


def test_default_kubernetes_class_gives_examples_dev_a_tls_cache(tmp_path):
    """`helm install` + `kubectl apply -f examples/dev.yaml`: the operator's
    plan for dev.yaml under the rendered default class is a TLS StatefulSet
    of the official image, with the URI and the CA in Secret dev-redis."""
    cls = default_class(render())
    plan = _plan(tmp_path, DEV_EXAMPLE, cls)
    assert plan["class"] == cls["metadata"]["name"] and plan["provider"] == "Kubernetes"
    assert plan["planned"]["detail"]["image"] == DEFAULT_VALKEY_IMAGE
    assert any(o.startswith("NetworkPolicy ") for o in plan["planned"]["objects"])
    assert plan["secret"]["name"] == "dev-redis"
    assert {"uri", "host", "port", "password", "tls", "ca.crt"} <= set(plan["secret"]["keys"])
    redis = write_manifests(tmp_path / "redis.yaml", {
        "apiVersion": "rediscache.dev/v1alpha1", "kind": "RedisCache",
        "metadata": {"name": "legacy", "namespace": "shop"}, "spec": {"engine": "redis"}})
    assert _plan(tmp_path, redis, cls)["planned"]["detail"]["image"] == DEFAULT_REDIS_IMAGE


def test_values_document_the_operators_kubernetes_defaults():
    """values.yaml says what an empty kubernetes value means."""
    text = (CHART / "values.yaml").read_text()
    for image in (DEFAULT_VALKEY_IMAGE, DEFAULT_REDIS_IMAGE, DEFAULT_EXPORTER_IMAGE):
        assert image in text, f"values.yaml does not name the default {image}"
    values = yaml.safe_load(text)["defaultClass"]
    assert values["provider"] == "Kubernetes" and values["defaults"]["engine"] == "valkey"
    k8s = _crd(CLASS_CRD)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"][
        "properties"]["kubernetes"]["properties"]
    assert set(values["kubernetes"]) == set(k8s), "a defaultClass.kubernetes value per CRD field"


def test_kubernetes_values_are_accepted_by_the_operator(tmp_path):
    """The class rendered from every kubernetes value: the mirror images are
    used (engine redis from the class's defaults for a cache that names
    none), the NetworkPolicy is left out."""
    values = kubernetes_values()
    k = values["defaultClass"]["kubernetes"]
    cls = default_class(render(values))
    cache = write_manifests(tmp_path / "cache.yaml", {
        "apiVersion": "rediscache.dev/v1alpha1", "kind": "RedisCache",
        "metadata": {"name": "sessions", "namespace": "shop"}, "spec": {}})
    plan = _plan(tmp_path, cache, cls)
    assert plan["class"] == "in-cluster" and plan["provider"] == "Kubernetes"
    assert plan["planned"]["detail"]["image"] == k["redisImage"]
    assert plan["planned"]["detail"]["maxmemoryBytes"] == 512 * 1024 * 1024
    assert not any(o.startswith("NetworkPolicy ") for o in plan["planned"]["objects"])
    assert _plan(tmp_path, DEV_EXAMPLE, cls)["planned"]["detail"]["image"] == k["valkeyImage"]


def test_irsa_role_annotation():
    values = eks_values()
    sa = one(render(values), "ServiceAccount")
    assert sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"] == values["serviceAccount"]["iamRoleArn"]
    assert "annotations" not in one(render(), "ServiceAccount")["metadata"]


def test_pdb_only_with_several_replicas():
    pdb = one(render(), "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"] == one(render(), "Deployment")["spec"]["selector"]["matchLabels"]
    assert not of_kind(render(values_for("single-replica")), "PodDisruptionBudget")


def _egress_ports(np: dict[str, Any]) -> set[int]:
    return {p["port"] for rule in np["spec"]["egress"] for p in rule.get("ports", [])}


def test_network_policy():
    np = one(render(eks_values()), "NetworkPolicy")
    assert set(np["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    assert {53, 443} <= _egress_ports(np)
    assert not of_kind(render(), "NetworkPolicy")


@pytest.mark.parametrize("values", [{}, ELASTICACHE_VALUES, "eks"], ids=["kubernetes", "elasticache", "eks"])
def test_network_policy_lets_the_operator_reach_caches_in_any_namespace(values):
    """Health probes, Sentinel queries and live ACL commands go to the caches'
    pods in their own namespaces: Redis 6379 and Sentinel 26379, to any
    destination (no `to`), next to the Kubernetes API."""
    values = eks_values() if values == "eks" else values
    np = one(render(deep_merge(values, {"networkPolicy": {"enabled": True}})), "NetworkPolicy")
    assert {53, 443, 6443, 6379, 26379} <= _egress_ports(np)
    for rule in np["spec"]["egress"]:
        if {6379, 26379} & {p["port"] for p in rule.get("ports", [])}:
            assert "to" not in rule, "cache ports are open towards every namespace"
            assert {p["protocol"] for p in rule["ports"]} == {"TCP"}
    extra = {"to": [{"namespaceSelector": {}}], "ports": [{"port": 6380, "protocol": "TCP"}]}
    np = one(render({"networkPolicy": {"enabled": True, "extraEgress": [extra]}}), "NetworkPolicy")
    assert extra in np["spec"]["egress"]
    np = one(render({"networkPolicy": {"enabled": True, "restrictEgress": False}}), "NetworkPolicy")
    assert np["spec"]["policyTypes"] == ["Ingress"] and "egress" not in np["spec"]


# --------------------------------------------------------------------------
# The default RedisCacheClass
# --------------------------------------------------------------------------


CLASS_VALUE_SETS = sorted(n for n in VALUE_SETS if values_for(n).get("defaultClass", {}).get("create", True))


@pytest.mark.parametrize("values_name", CLASS_VALUE_SETS)
def test_default_class_validates_against_the_crd(values_name):
    cls = default_class(render(values_for(values_name)))
    assert cls["apiVersion"] == "rediscache.dev/v1alpha1" and cls["kind"] == "RedisCacheClass"
    assert cls["metadata"]["annotations"][DEFAULT_CLASS_ANNOTATION] == "true"
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*", cls["metadata"]["name"])
    assert "namespace" not in cls["metadata"], "RedisCacheClass is cluster-scoped"
    assert cls["metadata"]["labels"]["app.kubernetes.io/instance"] == RELEASE
    assert_valid_class(cls)


def test_class_validation_catches_bad_classes():
    """The CRD check above is not vacuous."""
    good = default_class(render(eks_values()))
    assert_valid_class(good)
    for bad_spec in (
        {"provider": "ElastiCache"},                                          # no elastiCache block
        {"provider": "Kubernetes", "elastiCache": {"region": "eu-west-1"}},   # wrong block
        {"provider": "ElastiCache", "elastiCache": {}},                       # region required
        {"provider": "ElastiCache", "elastiCache": {"region": "eu-west-1", "nodeTyp": "cache.t4g.micro"}},
        {"provider": "ElastiCache", "elastiCache": {"region": "eu-west-1", "allowedCidrs": ["0.0.0.0/0"]}},
        {"provider": "ElastiCache", "elastiCache": {"region": "eu-west-1", "subnetGroupName": "g",
                                                    "subnetIds": ["subnet-0a"]}},
        {"provider": "Kubernetes"},                                                  # no kubernetes block
        {"provider": "Kubernetes", "kubernetes": {}, "elastiCache": {"region": "eu-west-1"}},  # both blocks
        {"provider": "ElastiCache", "elastiCache": {"region": "eu-west-1"}, "kubernetes": {}},
        {"provider": "Kubernetes", "kubernetes": {"valkeyimage": "valkey/valkey:8.1"}},
        {"provider": "Kubernetes", "kubernetes": {"exporter": {"image": "x"}}},        # enabled required
        {"provider": "Kubernetes", "kubernetes": {"networkPolicy": "false"}},
        {"provider": "Kubernetes", "kubernetes": {"valkeyImage": ""}},
    ):
        with pytest.raises(AssertionError, match="invalid against the CRD"):
            assert_valid_class({**good, "spec": bad_spec})


def test_default_is_the_only_class_and_marked_default():
    docs = render()
    cls = default_class(docs)
    assert cls["metadata"]["name"] == "default"
    # Kept on uninstall: caches of the class need it to be deleted.
    assert cls["metadata"]["annotations"] == {DEFAULT_CLASS_ANNOTATION: "true",
                                              "helm.sh/resource-policy": "keep"}
    assert cls["_template"].endswith("templates/defaultclass.yaml")
    # The chart's defaults: an in-cluster class that works on any cluster,
    # every kubernetes value the operator's default, no elastiCache block.
    assert cls["spec"] == {
        "provider": "Kubernetes",
        "defaults": {"engine": "valkey", "deletionPolicy": "Delete"},
        "kubernetes": {},
    }
    assert_valid_class(cls)


def test_elasticache_class_from_the_provider_and_region_only():
    cls = default_class(render(ELASTICACHE_VALUES))
    assert cls["spec"] == {
        "provider": "ElastiCache",
        "defaults": {"engine": "valkey", "deletionPolicy": "Delete"},
        "elastiCache": {"region": "us-east-1", "nodeType": "cache.t4g.micro"},
    }
    assert_valid_class(cls)
    # redis stays available as the default engine (what caches created
    # without spec.engine by earlier releases run).
    redis = default_class(render(deep_merge(ELASTICACHE_VALUES, {"defaultClass": {"defaults": {"engine": "redis"}}})))
    assert redis["spec"]["defaults"]["engine"] == "redis"
    assert_valid_class(redis)


def test_kubernetes_values_reach_the_default_class():
    values = kubernetes_values()
    k = values["defaultClass"]["kubernetes"]
    cls = default_class(render(values))
    assert cls["metadata"]["name"] == "in-cluster"
    assert cls["spec"] == {
        "provider": "Kubernetes",
        "defaults": {"engine": "redis", "memory": "512Mi", "evictionPolicy": "allkeys-lfu",
                     "deletionPolicy": "Delete"},
        "kubernetes": k,
    }
    assert "elastiCache" not in cls["spec"]
    assert_valid_class(cls)
    # The exporter image is optional (the operator's default then).
    cls = default_class(render(deep_merge(values, {"defaultClass": {"kubernetes": {"exporter": {"image": ""}}}})))
    assert cls["spec"]["kubernetes"]["exporter"] == {"enabled": True}
    assert_valid_class(cls)


def test_unset_kubernetes_values_are_left_out():
    """Empty kubernetes values are the operator's defaults: not rendered.
    networkPolicy true is the operator's default too; a disabled exporter is
    no exporter, whatever its image."""
    empty = {"valkeyImage": "", "redisImage": "", "storageClassName": "", "resources": {},
             "nodeSelector": {}, "tolerations": [], "exporter": {"enabled": False, "image": "mirror/x:1"},
             "networkPolicy": True}
    assert default_class(render({"defaultClass": {"kubernetes": empty}}))["spec"]["kubernetes"] == {}
    only_np = default_class(render({"defaultClass": {"kubernetes": {"networkPolicy": False}}}))
    assert only_np["spec"]["kubernetes"] == {"networkPolicy": False}
    assert_valid_class(only_np)
    only_image = default_class(render({"defaultClass": {"kubernetes": {"redisImage": "mirror.local/redis:7.4"}}}))
    assert only_image["spec"]["kubernetes"] == {"redisImage": "mirror.local/redis:7.4"}


def test_provider_picks_exactly_one_block():
    """The CRD's CEL rule: exactly the block spec.provider names. The values
    file has both blocks; only the provider's is rendered."""
    both = deep_merge(kubernetes_values(), eks_values())  # provider ElastiCache, kubernetes values set
    spec = default_class(render(both))["spec"]
    assert spec["provider"] == "ElastiCache" and "kubernetes" not in spec and spec["elastiCache"]["region"]
    spec = default_class(render(deep_merge(both, {"defaultClass": {"provider": "Kubernetes"}})))["spec"]
    assert spec["provider"] == "Kubernetes" and "elastiCache" not in spec
    assert spec["kubernetes"] == kubernetes_values()["defaultClass"]["kubernetes"]


def test_values_reach_the_default_class():
    """Every defaultClass value is in the rendered class, where the CRD wants it."""
    values = full_values()
    dc = values["defaultClass"]
    cls = default_class(render(values))
    assert cls["metadata"]["name"] == dc["name"]
    spec = cls["spec"]
    assert spec["provider"] == "ElastiCache"
    assert "kubernetes" not in spec, "only the provider's block"
    assert spec["allowedNamespaces"] == dc["allowedNamespaces"]
    assert spec["allowedNamespaceSelector"] == dc["allowedNamespaceSelector"]
    assert spec["defaults"] == {k: v for k, v in dc["defaults"].items() if v}
    assert spec["defaults"] == {"engine": "valkey", "deletionPolicy": "Snapshot", "memory": "1Gi",
                                "evictionPolicy": "volatile-lru"}
    assert spec["elastiCache"] == {k: v for k, v in dc["elastiCache"].items() if v not in ("", [], {})}
    for key in ("region", "subnetIds", "allowedCidrs", "allowedSecurityGroupIds", "securityGroupIds",
                "nodeType", "nodeFamily", "kmsKeyId", "roleArn", "endpointUrl", "tags"):
        assert spec["elastiCache"][key] == dc["elastiCache"][key], key
    # The subnet group instead of subnet ids.
    group = default_class(render(deep_merge(values, {"defaultClass": {"elastiCache": {
        "subnetIds": [], "subnetGroupName": "shared-cache-subnets"}}})))
    assert group["spec"]["elastiCache"]["subnetGroupName"] == "shared-cache-subnets"
    assert "subnetIds" not in group["spec"]["elastiCache"]
    assert_valid_class(group)


def test_every_class_field_is_settable_from_values():
    """Every field of the CRD's spec (but the Upstash and Azure blocks),
    spec.defaults, spec.elastiCache and spec.kubernetes can be set from values."""
    schema = _crd(CLASS_CRD)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    values = full_values()
    rendered: dict[str, set[str]] = {"spec": set(), "defaults": set(), "elastiCache": set(), "kubernetes": set(),
                                     "exporter": set()}
    for v in (values, deep_merge(values, {"defaultClass": {"elastiCache": {
            "subnetIds": [], "subnetGroupName": "shared-cache-subnets"}}}), kubernetes_values()):
        spec = default_class(render(v))["spec"]
        rendered["spec"] |= set(spec)
        rendered["defaults"] |= set(spec["defaults"])
        rendered["elastiCache"] |= set(spec.get("elastiCache", {}))
        rendered["kubernetes"] |= set(spec.get("kubernetes", {}))
        rendered["exporter"] |= set(spec.get("kubernetes", {}).get("exporter", {}))
    other_providers = {"upstash", "azure"}  # need credentials: created by hand, not by the chart
    assert set(schema["properties"]) - other_providers - rendered["spec"] == set()
    assert set(schema["properties"]["defaults"]["properties"]) - rendered["defaults"] == set()
    assert set(schema["properties"]["elastiCache"]["properties"]) - rendered["elastiCache"] == set()
    k8s = schema["properties"]["kubernetes"]["properties"]
    assert set(k8s) - rendered["kubernetes"] == set()
    assert set(k8s["exporter"]["properties"]) - rendered["exporter"] == set()
    # ... and the values schema knows exactly the CRD's kubernetes fields.
    values_k8s = json.loads((CHART / "values.schema.json").read_text())[
        "properties"]["defaultClass"]["properties"]["kubernetes"]["properties"]
    assert set(values_k8s) == set(k8s)
    assert set(values_k8s["exporter"]["properties"]) == set(k8s["exporter"]["properties"])


def test_unset_class_values_are_left_out():
    """Empty values are not rendered: the CRD would take subnetGroupName ""
    as set (and refuse it next to subnetIds), and "" fails its patterns."""
    values = deep_merge(eks_values(), {"defaultClass": {"defaults": {"engine": "", "deletionPolicy": ""},
                                                        "elastiCache": {"nodeType": ""}}})
    spec = default_class(render(values))["spec"]

    def empties(node, path="spec"):
        if node in ("", [], {}, None):
            yield path
        elif isinstance(node, dict):
            for k, v in node.items():
                yield from empties(v, f"{path}.{k}")
        elif isinstance(node, list):
            for i, v in enumerate(node):
                yield from empties(v, f"{path}[{i}]")

    assert not list(empties(spec)), list(empties(spec))
    assert "defaults" not in spec, "an all-empty defaults block is left out"
    assert set(spec["elastiCache"]) == {"region", "subnetIds", "allowedCidrs", "allowedSecurityGroupIds", "tags"}
    assert "allowedNamespaces" not in spec


@pytest.mark.parametrize("values", [
    {"defaultClass": {"create": False}},
    {"defaultClass": {"create": False, "elastiCache": {"region": ""}}},  # the region is then not needed
], ids=["create-false", "create-false-no-region"])
def test_no_default_class_when_create_is_false(values):
    out = _chart().render(values=values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    docs = [d for path, text in out.items() if not path.endswith("NOTES.txt")
            for d in yaml.safe_load_all(text) if d]
    assert not of_kind(docs, "RedisCacheClass")
    assert one(docs, "Deployment")
    # The operator still gets its rules on classes: it reads the ones the platform team creates.
    cluster = {t for role, ns in operator_roles(docs) if ns is None for t in triples(role["rules"])}
    assert {t for t in triples(binary_rules()) if is_cluster_scoped(t)} <= cluster


@pytest.mark.parametrize("values", [
    {"defaultClass": {"provider": "ElastiCache"}},  # the region has no default
    {"defaultClass": {"provider": "ElastiCache", "elastiCache": {"region": ""}}},
    {"defaultClass": {"provider": "ElastiCache", "elastiCache": {"region": ""}}, "watchNamespaces": ["shop"]},
], ids=["no-region", "empty", "watch-namespaces"])
def test_elasticache_without_region_fails_with_a_clear_message(values):
    with pytest.raises(helm.HelmError, match=r"defaultClass\.elastiCache\.region is required") as err:
        _chart().render(values=values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    assert "defaultClass.create=false" in str(err.value), "the message says how to do without"
    assert "defaultClass.provider=Kubernetes" in str(err.value)
    # (helm lint cannot report it: in lint mode Helm turns `fail` into a log line.)


@pytest.mark.parametrize("values", [
    {},  # the chart's own defaults
    {"defaultClass": {"provider": "Kubernetes", "elastiCache": {"region": ""}}},
    {"defaultClass": {"provider": "Kubernetes"}, "watchNamespaces": ["shop"]},
], ids=["chart-defaults", "empty-region", "watch-namespaces"])
def test_kubernetes_class_needs_no_region(values):
    out = _chart().render(values=values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    docs = [d for path, text in out.items() if not path.endswith("NOTES.txt")
            for d in yaml.safe_load_all(text) if d]
    cls = default_class(docs)
    assert cls["spec"]["provider"] == "Kubernetes" and "elastiCache" not in cls["spec"]
    assert_valid_class(cls)


# --------------------------------------------------------------------------
# RBAC
# --------------------------------------------------------------------------


@pytest.mark.parametrize("values_name", sorted(VALUE_SETS))
def test_no_wildcards_in_any_role(values_name):
    for doc in render(values_for(values_name)):
        if doc["kind"] not in ("Role", "ClusterRole"):
            continue
        assert "aggregationRule" not in doc
        for rule in doc["rules"]:
            for field in ("apiGroups", "resources", "verbs", "resourceNames"):
                assert not any("*" in item for item in rule.get(field, [])), \
                    f"{doc['kind']} {doc['metadata']['name']}: wildcard in {field}: {rule}"
            assert "nonResourceURLs" not in rule


def test_rbac_rules_file_is_the_binary_output():
    in_chart = json.loads((CHART / "files" / "rbac-rules.json").read_text())
    assert in_chart == binary_rules(), (
        "charts/redis-cache-operator/files/rbac-rules.json is stale; regenerate it with\n"
        "  target/debug/redis-cache-operator rbac > charts/redis-cache-operator/files/rbac-rules.json")


def _lease_triples() -> set[tuple[str, str, str]]:
    return {t for t in triples(binary_rules()) if t[1] == "leases"}


def test_cluster_wide_rbac_is_exactly_the_binary_rules():
    docs = render()
    wanted = triples(binary_rules())
    granted: set[tuple[str, str, str]] = set()
    for role, ns in operator_roles(docs):
        got = triples(role["rules"])
        if role["kind"] == "Role":
            assert ns == NAMESPACE
            assert got == _lease_triples(), "only leader election is namespaced when watching everything"
        else:
            assert ns is None
            assert not {t for t in got if t[1] == "leases"}, "Leases belong in the release namespace only"
        granted |= got
    assert {t for t in wanted if is_cluster_scoped(t)}, "the binary asks for rules on cluster-scoped classes"
    assert granted == wanted, (
        f"chart grants but operator does not need: {sorted(granted - wanted)}; "
        f"operator needs but chart lacks: {sorted(wanted - granted)}")


def test_watch_namespaces_renders_a_role_per_namespace():
    """Namespaced rules in a Role per watched namespace; the rules on the
    cluster-scoped RedisCacheClasses (which a Role cannot grant) and nothing
    else in a ClusterRole."""
    namespaces = ["shop", "payments", NAMESPACE]
    docs = render({"watchNamespaces": namespaces})
    assert sorted(r["metadata"]["name"] for r in of_kind(docs, "ClusterRole")) == sorted([
        f"{RELEASE}-view", f"{RELEASE}-edit", f"{RELEASE}-classes"]), \
        "only the aggregated user roles and the class rules are cluster-wide"
    assert [b["metadata"]["name"] for b in of_kind(docs, "ClusterRoleBinding")] == [f"{RELEASE}-classes"]
    wanted = triples(binary_rules())
    cluster = {t for t in wanted if is_cluster_scoped(t)}
    assert {r for _, r, _ in cluster} == {"rediscacheclasses", "rediscacheclasses/status", "namespaces"}
    watch = wanted - _lease_triples() - cluster
    per_ns: dict[str, set[tuple[str, str, str]]] = {}
    cluster_wide: set[tuple[str, str, str]] = set()
    for role, ns in operator_roles(docs):
        if ns is None:
            assert role["kind"] == "ClusterRole"
            cluster_wide |= triples(role["rules"])
        else:
            assert role["kind"] == "Role"
            per_ns.setdefault(ns, set()).update(triples(role["rules"]))
    assert cluster_wide == cluster, "exactly the class and namespace rules are cluster-wide"
    assert set(per_ns) == set(namespaces)
    for ns in namespaces:
        expected = watch | (_lease_triples() if ns == NAMESPACE else set())
        assert per_ns[ns] == expected, ns
    assert per_ns[NAMESPACE] | cluster_wide | watch == wanted
    assert env_of(docs)["WATCH_NAMESPACES"]["value"] == ",".join(namespaces)


# What the Kubernetes backend creates and watches in a cache's namespace.
KUBERNETES_BACKEND_RESOURCES = {("apps", "statefulsets"), ("", "services"), ("", "configmaps"), ("", "pods"),
                                ("", "persistentvolumeclaims"), ("policy", "poddisruptionbudgets"),
                                ("networking.k8s.io", "networkpolicies"), ("", "secrets")}


@pytest.mark.parametrize("watch", [[], ["shop", "payments"]], ids=["cluster-wide", "watch-namespaces"])
def test_kubernetes_backend_rules_are_granted_where_caches_live(watch):
    """The Kubernetes backend's objects live in the caches' namespaces: its
    rules are in the operator's ClusterRole, or in the Role of every watched
    namespace, with exactly the binary's verbs; never in the class ClusterRole
    when watching some namespaces."""
    wanted = {t for t in triples(binary_rules()) if (t[0], t[1]) in KUBERNETES_BACKEND_RESOURCES}
    assert {(g, r) for g, r, _ in wanted} == KUBERNETES_BACKEND_RESOURCES, "the binary asks for them all"
    docs = render({"watchNamespaces": watch})
    granted: dict[str | None, set[tuple[str, str, str]]] = {}
    for role, ns in operator_roles(docs):
        granted.setdefault(ns, set()).update(
            t for t in triples(role["rules"]) if (t[0], t[1]) in KUBERNETES_BACKEND_RESOURCES)
    if not watch:
        assert granted.get(None) == wanted
        assert not granted.get(NAMESPACE), "not in the leader-election Role"
    else:
        assert not granted.get(None), "nothing namespaced in the class ClusterRole"
        for ns in watch:
            assert granted.get(ns) == wanted, ns


@pytest.mark.parametrize("values_name", sorted(VALUE_SETS))
def test_cluster_scoped_rules_are_never_in_a_role(values_name):
    """A Role's rules on RedisCacheClasses would grant nothing."""
    for doc in of_kind(render(values_for(values_name)), "Role"):
        assert not [t for t in triples(doc["rules"]) if is_cluster_scoped(t)], doc["metadata"]


def test_rbac_can_be_left_to_the_platform():
    docs = render(values_for("rbac-off"))
    assert not [d for d in docs if d["kind"] in ("Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding")]
    assert not of_kind(docs, "ServiceAccount")
    assert one(docs, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "existing"


# --------------------------------------------------------------------------
# CRD
# --------------------------------------------------------------------------


def test_chart_crds_are_identical_to_crds_dir():
    assert sorted(p.name for p in (ROOT / "crds").iterdir()) == sorted(c.name for c in CRDS)
    chart_crds = sorted(p.name for p in (CHART / "crds").iterdir())
    assert chart_crds == sorted(c.name for c in CRDS)
    for crd in CRDS:
        assert (CHART / "crds" / crd.name).read_bytes() == crd.read_bytes(), (
            f"the chart's {crd.name} differs from crds/; copy them (scripts/regenerate):\n"
            "  cp crds/*.yaml charts/redis-cache-operator/crds/")
    loaded = {c["filename"]: c["data"] for c in _chart().crds}
    assert sorted(loaded) == sorted(f"redis-cache-operator/crds/{c.name}" for c in CRDS)
    for crd in CRDS:
        assert loaded[f"redis-cache-operator/crds/{crd.name}"] == crd.read_text(), \
            f"Helm would install a different {crd.name}"
    kinds = {(_crd(c)["spec"]["names"]["kind"], _crd(c)["spec"]["scope"]) for c in CRDS}
    assert kinds == {("RedisCache", "Namespaced"), ("RedisCacheClass", "Cluster")}


def test_crd_is_not_templated():
    """Helm installs crds/ before the templates and never deletes it."""
    for doc in render(full_values()):
        assert doc["kind"] != "CustomResourceDefinition"


# --------------------------------------------------------------------------
# values.schema.json
# --------------------------------------------------------------------------


BAD_VALUES = [
    {"replicaCount": "two"},
    {"replicaCount": 1.5},
    {"concurrency": "8"},
    {"leaderElection": {"enabled": "yes"}},
    {"defaults": {"engine": "redis"}},  # removed: now defaultClass.defaults
    {"aws": {"region": "eu-west-1"}},  # removed: now defaultClass.elastiCache.region
    {"defaultClass": {"create": "yes"}},
    {"defaultClass": {"name": "Default"}},
    {"defaultClass": {"provider": "elasticache"}},
    {"defaultClass": {"provider": "kubernetes"}},
    {"defaultClass": {"provider": "Upstash"}},  # needs credentials: a class made by hand
    {"defaultClass": {"provider": "Azure"}},
    {"defaultClass": {"provider": ""}},
    {"defaultClass": {"kubernetes": {"valkeyimage": "valkey/valkey:8.1"}}},  # typo of valkeyImage
    {"defaultClass": {"kubernetes": {"valkeyImage": "valkey/valkey 8.1"}}},
    {"defaultClass": {"kubernetes": {"redisImage": 7.4}}},
    {"defaultClass": {"kubernetes": {"storageClassName": "GP3"}}},
    {"defaultClass": {"kubernetes": {"resources": {"request": {"cpu": "1"}}}}},  # typo of requests
    {"defaultClass": {"kubernetes": {"resources": {"limits": {"memory": "1 GiB"}}}}},
    {"defaultClass": {"kubernetes": {"nodeSelector": {"pool": 1}}}},
    {"defaultClass": {"kubernetes": {"tolerations": {"key": "dedicated"}}}},
    {"defaultClass": {"kubernetes": {"tolerations": [{"key": "a", "operator": "exists"}]}}},
    {"defaultClass": {"kubernetes": {"exporter": {"enabled": "yes"}}}},
    {"defaultClass": {"kubernetes": {"exporter": True}}},
    {"defaultClass": {"kubernetes": {"networkPolicy": "false"}}},
    {"defaultClass": {"kubernetes": {"region": "eu-west-1"}}},  # an elastiCache value
    {"networkPolicy": {"egressPorts": [0]}},
    {"defaultClass": {"allowedNamespaces": "shop"}},
    {"defaultClass": {"defaults": {"engine": "memcached"}}},
    {"defaultClass": {"defaults": {"deletionPolicy": "delete"}}},
    {"defaultClass": {"defaults": {"memory": "1 GB"}}},
    {"defaultClass": {"defaults": {"evictionPolicy": "lru"}}},
    {"defaultClass": {"defaults": {"nodeType": "cache.t4g.micro"}}},  # nodeType is in elastiCache
    {"defaultClass": {"elastiCache": {"region": "EU-WEST-1"}}},
    {"defaultClass": {"elastiCache": {"region": "eu west 1"}}},
    {"defaultClass": {"elastiCache": {"subnetIds": "subnet-0a1b2c3d"}}},
    {"defaultClass": {"elastiCache": {"subnetIds": ["not-a-subnet"]}}},
    {"defaultClass": {"elastiCache": {"allowedCidrs": ["0.0.0.0/0"]}}},
    {"defaultClass": {"elastiCache": {"allowedCidrs": ["::/0"]}}},
    {"defaultClass": {"elastiCache": {"allowedCidrs": ["10.0.0.0"]}}},
    {"defaultClass": {"elastiCache": {"allowedSecurityGroupIds": ["sg-XYZ"]}}},
    {"defaultClass": {"elastiCache": {"securityGroupIds": [f"sg-0{i}" for i in range(5)]}}},  # max 4
    {"defaultClass": {"elastiCache": {"nodeType": "t4g.micro"}}},
    {"defaultClass": {"elastiCache": {"nodeFamily": "R7G"}}},
    {"defaultClass": {"elastiCache": {"roleArn": "my-role"}}},
    {"defaultClass": {"elastiCache": {"endpointUrl": "elasticache.local"}}},
    {"defaultClass": {"elastiCache": {"subnetGroupName": "my_group"}}},
    {"defaultClass": {"elastiCache": {"tags": {"cost-center": 1234}}}},
    {"defaultClass": {"elastiCache": {"subnetId": ["subnet-0a1b2c3d"]}}},  # typo of subnetIds
    {"aws": {"rateLimit": "fast"}},
    {"aws": {"burst": 0}},
    {"pollInterval": {"settled": 300}},
    {"pollInterval": {"settled": "5 minutes"}},
    {"watchNamespaces": "shop"},
    {"logging": {"format": "xml"}},
    {"serviceAccount": {"iamRoleArn": "my-role"}},
    {"watchNamespace": ["shop"]},  # typo of watchNamespaces
]


@pytest.mark.parametrize("bad", BAD_VALUES, ids=[json.dumps(b) for b in BAD_VALUES])
def test_schema_rejects_bad_values(bad):
    with pytest.raises(helm.HelmValuesError):
        _chart().validate_schema(bad)
    with pytest.raises(helm.HelmError):
        _chart().render(values=bad, name=RELEASE, namespace=NAMESPACE)
    report = helm.lint(CHART, bad, strict=True, kube_version="v1.37.0")
    assert report["errors"], f"lint accepted {bad}"


def test_schema_accepts_the_example_values():
    _chart().validate_schema(eks_values())
    _chart().validate_schema(full_values())
    _chart().validate_schema(kubernetes_values())
    _chart().validate_schema(yaml.safe_load((CHART / "values.yaml").read_text()))


@pytest.mark.parametrize("provider", ["Upstash", "Azure"])
def test_credentialed_providers_are_refused_by_the_schema(provider):
    """Upstash and Azure classes need credentials the chart does not hold:
    the platform team creates them (defaultClass.create=false)."""
    with pytest.raises(helm.HelmValuesError, match="Kubernetes") as err:
        _chart().validate_schema({"defaultClass": {"provider": provider}})
    assert "ElastiCache" in str(err.value)
    docs = render({"defaultClass": {"create": False}})
    assert not of_kind(docs, "RedisCacheClass")


@pytest.mark.parametrize("bad,message", [
    ({"defaultClass": {"elastiCache": {"subnetIds": ["subnet-0a"], "subnetGroupName": "shared"}}}, "not both"),
    ({"replicaCount": 2, "leaderElection": {"enabled": False}}, "leaderElection"),
])
def test_template_rejects_conflicting_values(bad, message):
    with pytest.raises(helm.HelmError, match=message):
        _chart().render(values=deep_merge(ELASTICACHE_VALUES, bad), name=RELEASE, namespace=NAMESPACE)


# --------------------------------------------------------------------------
# NOTES.txt
# --------------------------------------------------------------------------


def _notes(values):
    return next(text for path, text in render_files(values).items() if path.endswith("NOTES.txt"))


def _inline_manifest(notes: str) -> dict[str, Any]:
    """The RedisCache of the notes' `cat <<'YAML' | kubectl apply` block."""
    block = re.search(r"<<'YAML'[^\n]*\n(.*?)\n  YAML\n", notes, re.S)
    assert block, notes
    return yaml.safe_load("\n".join(line[2:] for line in block.group(1).splitlines()))


def test_notes_for_the_kubernetes_default_say_what_to_apply_next():
    notes = _notes({})
    assert 'default RedisCacheClass\n"default" (Kubernetes' in notes
    assert "kubectl apply -f examples/dev.yaml" in notes
    # The inline manifest is examples/dev.yaml, so both ways give the same cache.
    (dev,) = [d for d in yaml.safe_load_all(DEV_EXAMPLE.read_text()) if d]
    assert _inline_manifest(notes) == dev
    assert "kubectl get rediscaches -w" in notes
    assert 'the Secret "dev-redis"' in notes and "uri" in notes and "ca.crt" in notes
    assert "secretKeyRef: {name: dev-redis, key: uri}" in notes
    assert "kubectl describe rediscache dev " in notes
    assert "NetworkPolicy" in notes and "defaultClass.kubernetes.networkPolicy=false" in notes
    # Nothing about AWS: no region, IAM role or AWS resource names involved.
    assert "WARNING" not in notes and "NOTE:" not in notes, notes
    assert "ElastiCache" not in notes and "iamRoleArn" not in notes and "sessions" not in notes
    notes = _notes({"defaultClass": {"kubernetes": {"networkPolicy": False}}})
    assert "networkPolicy=false" not in notes
    notes = _notes({"watchNamespaces": ["shop", "payments"]})
    assert "in a watched namespace (here shop)" in notes
    assert "kubectl apply -n shop -f examples/dev.yaml" in notes
    assert "kubectl get rediscaches -n shop -w" in notes
    assert "kubectl get secret -n shop dev-redis" in notes


def test_notes_say_what_to_apply_next():
    notes = _notes(ELASTICACHE_VALUES)
    assert "apiVersion: rediscache.dev/v1alpha1" in notes and "kind: RedisCache" in notes
    assert _inline_manifest(notes)["spec"]["nodeType"] == "cache.t4g.small"
    assert "kubectl get rediscaches -A -w" in notes
    assert "secretKeyRef" in notes
    assert 'default RedisCacheClass\n"default" (ElastiCache in us-east-1)' in notes
    assert "NOTE: serviceAccount.iamRoleArn is empty" in notes and 'NOTE: clusterName is the default' in notes
    assert "WARNING: no network placement in the default class" in notes
    assert "WARNING: no default ingress in the default class" in notes
    assert "defaults.network" not in notes and "aws.region" not in notes
    notes = _notes(eks_values())
    assert "WARNING" not in notes and "NOTE:" not in notes, notes
    assert "(ElastiCache in eu-west-1)" in notes
    notes = _notes(deep_merge(eks_values(), {"defaultClass": {"create": False}}))
    assert "NOTE: defaultClass.create is false" in notes and "WARNING" not in notes, notes


# --------------------------------------------------------------------------
# Dockerfile and .dockerignore
# --------------------------------------------------------------------------


def dockerfile_stages() -> list[dict[str, Any]]:
    """Stages of the Dockerfile, each with its FROM and its instructions."""
    text = (ROOT / "Dockerfile").read_text()
    logical, buf = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if buf and line.startswith("#"):
            continue
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        logical.append((buf + line).strip())
        buf = ""
    stages: list[dict[str, Any]] = []
    for line in logical:
        op, _, rest = line.partition(" ")
        op = op.upper()
        if op == "FROM":
            parts = rest.split()
            flags = [p for p in parts if p.startswith("--")]
            args = [p for p in parts if not p.startswith("--")]
            name = args[2] if len(args) >= 3 and args[1].upper() == "AS" else None
            stages.append({"from": args[0], "flags": flags, "name": name, "ops": []})
        else:
            assert stages, f"{op} before FROM"
            stages[-1]["ops"].append((op, rest.strip()))
    return stages


def _run_command(rest: str) -> str:
    words = shlex.split(rest)
    while words and words[0].startswith("--"):
        words.pop(0)
    return " ".join(words)


def test_dockerfile_build_stage_runs_exactly_cargo_build_release_locked():
    stages = dockerfile_stages()
    assert len(stages) >= 2, "multi-stage build"
    build = stages[0]
    assert build["from"] == "rust:1.95-bookworm"
    runs = [_run_command(rest) for op, rest in build["ops"] if op == "RUN"]
    assert runs == ["cargo build --release --locked"], runs


def test_dockerfile_runtime_stage_is_distroless_non_root_without_shell():
    stages = dockerfile_stages()
    final = stages[-1]
    assert final["from"] == "gcr.io/distroless/cc-debian12:nonroot"
    ops = dict(final["ops"]) if final["ops"] else {}
    assert not [rest for op, rest in final["ops"] if op == "RUN"], "no RUN in the runtime stage: it has no shell"
    user = ops.get("USER", "")
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0, f"USER must be a numeric non-root UID, got {user!r}"
    assert json.loads(ops["ENTRYPOINT"]) == ["/redis-cache-operator"]
    assert json.loads(ops["CMD"]) == ["run"]
    assert "8080" in ops["EXPOSE"].split()
    build_name = stages[0]["name"]
    copies = [rest for op, rest in final["ops"] if op == "COPY"]
    assert any(c.startswith(f"--from={build_name} ") and "target/release/redis-cache-operator" in c
               for c in copies), copies
    assert not [op for op, _ in final["ops"] if op in ("VOLUME", "SHELL")]


def test_chart_runs_the_image_as_its_user():
    """The Deployment's UID matches the image's USER (a read-only root FS and
    no writable volume: the operator writes only to stderr)."""
    uid = int(dict(dockerfile_stages()[-1]["ops"])["USER"].split(":")[0])
    docs = render()
    c = container(docs)
    assert c["securityContext"]["runAsUser"] == uid
    assert not c.get("volumeMounts")
    port = {p["name"]: p["containerPort"] for p in c["ports"]}["http"]
    expose = dict(dockerfile_stages()[-1]["ops"])["EXPOSE"].split()
    assert str(port) in expose


def _dockerignore_patterns() -> list[tuple[bool, re.Pattern[str]]]:
    """.dockerignore as (is_exception, regex), with Docker's semantics:
    `*` and `?` stay within a path segment, `**` spans segments, a pattern
    that matches a directory matches everything under it, last match wins."""
    out = []
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        neg = line.startswith("!")
        pat = line[1:].strip() if neg else line
        pat = os.path.normpath(pat).lstrip("/")
        rx, i = "", 0
        while i < len(pat):
            ch = pat[i]
            if pat.startswith("**/", i):
                rx += "(.*/)?"
                i += 3
                continue
            if pat.startswith("**", i):
                rx += ".*"
                i += 2
                continue
            rx += {"*": "[^/]*", "?": "[^/]"}.get(ch, re.escape(ch))
            i += 1
        out.append((neg, re.compile(rx + "(/.*)?$")))
    return out


def in_build_context(path: str) -> bool:
    included = True
    for neg, rx in _dockerignore_patterns():
        if rx.match(path):
            included = neg
    return included


def test_dockerignore_keeps_what_cargo_needs_and_nothing_else():
    cargo = tomllib.loads((ROOT / "Cargo.toml").read_text())
    needed = {"Cargo.toml", "Cargo.lock"}
    needed |= {str(p.relative_to(ROOT)) for p in (ROOT / "src").rglob("*") if p.is_file()}
    # Targets declared with explicit paths must exist in the context, or
    # cargo refuses the manifest.
    for section in ("lib", "bin", "test", "bench", "example"):
        entries = cargo.get(section, [])
        for entry in entries if isinstance(entries, list) else [entries]:
            if "path" in entry:
                needed.add(entry["path"])
    build = cargo.get("package", {}).get("build")
    if isinstance(build, str):
        needed.add(build)
    elif (ROOT / "build.rs").exists():
        needed.add("build.rs")
    if (ROOT / "benches").is_dir():
        needed |= {str(p.relative_to(ROOT)) for p in (ROOT / "benches").rglob("*") if p.is_file()}
    # Files the code embeds at compile time.
    for src in (ROOT / "src").rglob("*.rs"):
        for rel in re.findall(r'include_(?:str|bytes)!\(\s*"([^"]+)"', src.read_text()):
            needed.add(os.path.normpath(os.path.relpath(src.parent / rel, ROOT)))
    left_out = sorted(p for p in needed if not in_build_context(p))
    assert not left_out, f".dockerignore leaves out files the build needs: {left_out}"
    for path in ("target/debug/redis-cache-operator", ".git/HEAD", ".venv/bin/python",
                 "charts/redis-cache-operator/Chart.yaml", "tests/chart/test_chart.py",
                 "README.md", "Dockerfile", "src/target/x", "examples/eks-values.yaml"):
        assert not in_build_context(path), f"{path} should not be sent to the Docker daemon"
