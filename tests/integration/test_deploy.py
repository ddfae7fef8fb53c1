"""deploy/: kustomize and Helm render the same objects, all valid against Kubernetes schemas offline.

Core kinds are validated (strict: unknown fields are errors) against the Kubernetes 1.37
JSON schemas shipped in the `kubernetes-validate` wheel; PodMonitor, KafkaConnect and
KafkaConnector against the schemas in deploy/kubernetes/schemas/. No kind is skipped: a
document of any other kind fails the test.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from sidecar.config import load_settings
from tests.fixtures import pinned_debezium_version
from tests.integration.stack import REPO

# Where deploy/tools/install puts helm and kustomize (a cache outside the clone).
TOOLS = Path(subprocess.run([str(REPO / "deploy" / "tools" / "install"), "--where"], capture_output=True, text=True,
                            check=True, timeout=30).stdout.strip())
K8S_VERSION = "1.37.0"
CRD_SCHEMAS = {
    ("monitoring.coreos.com/v1", "PodMonitor"): "monitoring.coreos.com/podmonitor_v1.json",
    ("kafka.strimzi.io/v1", "KafkaConnect"): "kafka.strimzi.io/kafkaconnect_v1.json",
    ("kafka.strimzi.io/v1", "KafkaConnector"): "kafka.strimzi.io/kafkaconnector_v1.json",
}


def tool(name: str) -> str:
    path = TOOLS / name
    if not path.exists():
        pytest.fail(f"{path} missing: run deploy/tools/install")
    return str(path)


def render_kustomize(target: str) -> list[dict[str, Any]]:
    out = subprocess.run([tool("kustomize"), "build", str(REPO / "deploy" / "kubernetes" / target)],
                         capture_output=True, text=True, check=True, timeout=120).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def render_helm(*args: str) -> list[dict[str, Any]]:
    chart = REPO / "deploy" / "helm" / "checkpoint-sidecar"
    out = subprocess.run([tool("helm"), "template", "checkpoint-sidecar", str(chart), *args],
                         capture_output=True, text=True, check=True, timeout=120).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def validate(doc: dict[str, Any]) -> None:
    key = (doc.get("apiVersion"), doc.get("kind"))
    if key in CRD_SCHEMAS:
        schema = json.loads((REPO / "deploy" / "kubernetes" / "schemas" / CRD_SCHEMAS[key]).read_text())  # type: ignore[index]
        jsonschema.validate(doc, schema)
    else:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def objects(docs: list[dict[str, Any]]) -> set[tuple[str, str]]:
    # kustomize suffixes generated ConfigMap names with a content hash: compare base names.
    return {(d["kind"], re.sub(r"-[a-z0-9]{10}$", "", d["metadata"]["name"])) for d in docs}


@pytest.mark.parametrize("target", ["base", "overlays/example"])
def test_kustomize_renders_valid_objects(target: str) -> None:
    """Every object kustomize renders validates (none skipped)."""
    docs = render_kustomize(target)
    assert len(docs) == 7
    for d in docs:
        validate(d)


def test_helm_renders_valid_objects_same_as_kustomize() -> None:
    """Helm's default render validates and has exactly the kustomize base's objects."""
    helm = render_helm()
    for d in helm:
        validate(d)
    assert objects(helm) == objects(render_kustomize("base"))


def test_validation_really_rejects_mistakes() -> None:
    """A typo in a core kind and in a CRD both fail validation (the checks can fail)."""
    deployment = next(d for d in render_helm() if d["kind"] == "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbee"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(deployment)
    pm = next(d for d in render_helm() if d["kind"] == "PodMonitor")
    pm["spec"]["podMetricsEndpoints"][0]["intervall"] = "30s"
    with pytest.raises(jsonschema.ValidationError):
        validate(pm)


def test_deployment_operational_settings() -> None:
    """Probes, non-root, read-only root FS, grace period ≥ hook timeout, config rolls pods."""
    settings = load_settings(REPO / "deploy" / "kubernetes" / "base" / "config.yaml")
    for docs, tool_name in ((render_kustomize("base"), "kustomize"), (render_helm(), "helm")):
        dep = next(d for d in docs if d["kind"] == "Deployment")
        pod = dep["spec"]["template"]["spec"]
        c = pod["containers"][0]
        assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert c["startupProbe"]["httpGet"]["path"] == "/healthz"
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert c["securityContext"]["readOnlyRootFilesystem"] is True
        assert pod["terminationGracePeriodSeconds"] >= settings.health.hook_timeout_s + 10
        # SIGTERM: running calls get shutdown_grace_s, then the final commit must still fit
        assert pod["terminationGracePeriodSeconds"] >= settings.dispatch.shutdown_grace_s + 15
        cms = {v["configMap"]["name"] for v in pod["volumes"] if "configMap" in v}
        if tool_name == "kustomize":  # generated names carry a content hash: a change rolls the pods
            assert all(re.search(r"-[a-z0-9]{10}$", n) for n in cms), cms
        else:
            ann = dep["spec"]["template"]["metadata"]["annotations"]
            assert len(ann["checksum/config"]) == 64 and len(ann["checksum/hooks"]) == 64
        pm = next(d for d in docs if d["kind"] == "PodMonitor")
        assert pm["metadata"]["labels"]["release"] == "kube-prometheus-stack"


def test_helm_checksum_changes_with_config() -> None:
    """A different config gives a different checksum annotation (so pods roll)."""
    a = next(d for d in render_helm() if d["kind"] == "Deployment")
    b = next(d for d in render_helm("--set", "config=pipeline: other") if d["kind"] == "Deployment")
    key = "checksum/config"
    annotations = [d["spec"]["template"]["metadata"]["annotations"] for d in (a, b)]
    assert annotations[0][key] != annotations[1][key]


def test_hook_and_config_copies_in_sync() -> None:
    """The hooks and config packaged for kustomize and Helm are the repo's own (make deploy-sync)."""
    for hook in (REPO / "hooks").glob("*.py"):
        copies = (REPO / "deploy/kubernetes/base/hooks" / hook.name,
                  REPO / "deploy/helm/checkpoint-sidecar/files/hooks" / hook.name)
        for copy in copies:
            assert copy.read_text() == hook.read_text(), f"{copy} is stale: run make deploy-sync"
    assert (REPO / "deploy/helm/checkpoint-sidecar/files/config.yaml").read_text() == (
        REPO / "deploy/kubernetes/base/config.yaml").read_text()


def test_strimzi_resources_valid_and_in_sync() -> None:
    """Strimzi v1 resources validate, use the pom's versions, and match connectors/*.json."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_strimzi", REPO / "scripts" / "make_strimzi.py")
    assert spec and spec.loader
    make_strimzi = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_strimzi)
    for src, out in make_strimzi.FILES:
        path = REPO / "deploy" / "kubernetes" / "strimzi" / out
        assert path.read_text() == make_strimzi.render(src), f"{path} is stale: run scripts/make_strimzi.py"
    version = pinned_debezium_version()
    pom = (REPO / "deploy" / "local" / "pom.xml").read_text()
    kafka_version = re.search(r"<kafka.version>([^<]+)<", pom).group(1)  # type: ignore[union-attr]
    for path in sorted((REPO / "deploy" / "kubernetes" / "strimzi").glob("*.yaml")):
        doc = yaml.safe_load(path.read_text())
        validate(doc)
        if doc["kind"] == "KafkaConnect":
            assert doc["metadata"]["annotations"]["strimzi.io/use-connector-resources"] == "true"
            assert doc["spec"]["version"] == kafka_version
            assert {a["version"] for p in doc["spec"]["build"]["plugins"] for a in p["artifacts"]} == {version}


def test_dockerfile_non_root_exec_form() -> None:
    """The image runs as a non-root user with an exec-form entrypoint (PID 1 gets SIGTERM)."""
    text = (REPO / "Dockerfile").read_text()
    assert re.search(r"^USER 10001$", text, re.M)
    entry = re.search(r"^ENTRYPOINT (.+)$", text, re.M)
    assert entry and isinstance(json.loads(entry.group(1)), list)


def test_network_policy_and_tmp_size_limit() -> None:
    """Both renders carry a NetworkPolicy (ingress only to the HTTP port, bounded egress) and a sized /tmp."""
    for docs in (render_kustomize("base"), render_helm()):
        [policy] = [d for d in docs if d["kind"] == "NetworkPolicy"]
        spec = policy["spec"]
        assert set(spec["policyTypes"]) == {"Ingress", "Egress"}
        assert [p["port"] for rule in spec["ingress"] for p in rule["ports"]] == [9180]
        egress_ports = {(p["port"], p["protocol"]) for rule in spec["egress"] for p in rule["ports"]}
        assert {(53, "UDP"), (9092, "TCP"), (5432, "TCP"), (3306, "TCP")} <= egress_ports
        dep = next(d for d in docs if d["kind"] == "Deployment")
        labels = dep["spec"]["template"]["metadata"]["labels"]
        selector = spec["podSelector"].get("matchLabels", {})
        assert selector and all(labels.get(k) == v for k, v in selector.items())  # selects the sidecar pods
        [tmp] = [v for v in dep["spec"]["template"]["spec"]["volumes"] if v["name"] == "tmp"]
        assert tmp["emptyDir"]["sizeLimit"] == "64Mi"


def test_helm_env_accepts_value_from_and_env_from() -> None:
    """env entries may be valueFrom (secretKeyRef), envFrom takes whole Secrets; the render validates."""
    docs = render_helm("--set", "env.AUDIT_TOKEN.valueFrom.secretKeyRef.name=audit",
                       "--set", "env.AUDIT_TOKEN.valueFrom.secretKeyRef.key=token",
                       "--set", "envFrom[0].secretRef.name=checkpoint-sidecar-env")
    dep = next(d for d in docs if d["kind"] == "Deployment")
    validate(dep)
    c = dep["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in c["env"]}
    secret_ref = {"secretKeyRef": {"name": "audit", "key": "token"}}
    assert env["AUDIT_TOKEN"] == {"name": "AUDIT_TOKEN", "valueFrom": secret_ref}
    assert env["HIGH_VALUE_THRESHOLD"] == {"name": "HIGH_VALUE_THRESHOLD", "value": "1000"}
    assert c["envFrom"] == [{"secretRef": {"name": "checkpoint-sidecar-env"}}]


def test_helm_update_strategy_is_rendered_when_set() -> None:
    """Default: no strategy (Kubernetes' RollingUpdate, as the kustomize base); `updateStrategy`
    (Recreate for transaction hooks, README) reaches the Deployment and validates."""
    default = next(d for d in render_helm() if d["kind"] == "Deployment")
    assert "strategy" not in default["spec"]
    recreate = next(d for d in render_helm("--set", "updateStrategy.type=Recreate") if d["kind"] == "Deployment")
    validate(recreate)
    assert recreate["spec"]["strategy"] == {"type": "Recreate"}
