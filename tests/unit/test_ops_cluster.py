"""The keeper network's ops files: the compose file and the Kubernetes manifests.

No Kubernetes API server runs here, and ``kubectl apply/create --dry-run=client`` needs one
for discovery; so the manifests are rendered offline by ``kubectl kustomize`` (when kubectl is
installed: it parses every resource) and checked here against the parts of the Kubernetes
schema they use (apiVersion per kind, selectors that match, the probes, the Service a
StatefulSet names). ``make k8s`` runs the same render.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

OPS = Path(__file__).resolve().parents[2] / "ops" / "cluster"
KUBECTL = shutil.which("kubectl")
API = {"Service": "v1", "StatefulSet": "apps/v1", "PodDisruptionBudget": "policy/v1"}
CONTAINER_KEYS = {"name", "image", "command", "args", "env", "envFrom", "ports",
                  "livenessProbe", "readinessProbe", "volumeMounts", "resources"}


def manifests() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted((OPS / "k8s").glob("*.yaml")):
        if path.name != "kustomization.yaml":
            docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def test_manifests_follow_the_schema_they_use() -> None:
    docs = manifests()
    services = {d["metadata"]["name"] for d in docs if d["kind"] == "Service"}
    for d in docs:
        assert d["apiVersion"] == API[d["kind"]], d["kind"]
        assert d["metadata"]["name"]
        if d["kind"] != "StatefulSet":
            continue
        spec = d["spec"]
        assert spec["serviceName"] in services
        labels = spec["template"]["metadata"]["labels"]
        assert spec["selector"]["matchLabels"].items() <= labels.items()
        for c in spec["template"]["spec"]["containers"]:
            assert set(c) <= CONTAINER_KEYS and c["name"] and c["image"]
    (keeper,) = [d for d in docs if d["kind"] == "StatefulSet" and d["metadata"]["name"] == "keeper"]
    assert keeper["spec"]["replicas"] == 3
    (c,) = keeper["spec"]["template"]["spec"]["containers"]
    assert "--cluster" in c["args"]
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    env = {e["name"]: e for e in c["env"]}
    assert env["KEEPER_CLUSTER__REPLICA_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["KEEPER_CLUSTER__ENDPOINTS"]["value"].count("etcd:2379") == 3


@pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")
def test_kubectl_renders_the_manifests_offline() -> None:
    assert KUBECTL is not None
    out = subprocess.run([KUBECTL, "kustomize", str(OPS / "k8s")], capture_output=True,
                         text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    kinds = sorted(d["kind"] for d in yaml.safe_load_all(out.stdout) if d)
    assert kinds == sorted(d["kind"] for d in manifests())


def test_compose_has_three_keepers_and_three_etcd_members() -> None:
    compose = yaml.safe_load((OPS / "docker-compose.yml").read_text())
    services = compose["services"]
    keepers = [s for n, s in services.items() if n.startswith("keeper-")]
    members = [n for n in services if n.startswith("etcd-")]
    assert len(keepers) == 3 and len(members) == 3
    ids = {s["environment"]["KEEPER_CLUSTER__REPLICA_ID"] for s in keepers}
    assert len(ids) == 3
    for s in keepers:
        assert "--cluster" in s["command"]
        endpoints = s["environment"]["KEEPER_CLUSTER__ENDPOINTS"].split(",")
        assert sorted(endpoints) == sorted(f"http://{m}:2379" for m in members)
    for m in members:
        flags = services[m]["command"]
        initial = next(f for f in flags if f.startswith("--initial-cluster="))
        assert all(f"{x}=http://{x}:2380" in initial for x in members)
