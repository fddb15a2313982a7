"""deploy/kubernetes renders with ``kubectl kustomize`` (every overlay), every object validates
against the Kubernetes API schemas offline (``kubernetes-validate``, strict), the pods are
locked down, and the topology is docker-compose.yml's: the same Link Loom services with the same
commands and the same settings names."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from linkloom.sandbox import DEFAULT_SERVICE_PORT
from tests.support.real import require

ROOT = Path(__file__).parents[3]
KUBE = ROOT / "deploy" / "kubernetes"
OVERLAYS = sorted(p.name for p in (KUBE / "overlays").iterdir() if p.is_dir())
# The oldest Kubernetes the manifests claim (autoscaling/v2 and policy/v1 are GA there) and the
# newest the validator knows.
VERSIONS = ("1.25.0", kubernetes_validate.latest_version())
# Compose service → the Kubernetes workload that plays its part.
COUNTERPARTS = {
    "migrate": ("Job", "linkloom-migrate"),
    "api": ("Deployment", "linkloom-api"),
    "scheduler": ("Deployment", "linkloom-scheduler"),
    "worker": ("Deployment", "linkloom-worker"),
}
# Settings that differ on purpose, per compose service.
COMPOSE_ONLY = {
    # Compose runs proposals in docker containers through the host's socket; Kubernetes has no
    # docker socket to give a pod: the API sends them to the sandbox service instead.
    "api": {"LOOM_SANDBOX__IMAGE"},
}
KUBERNETES_ONLY = {"api": {"LOOM_SANDBOX__REMOTE_URL", "LOOM_SANDBOX__REMOTE_KEY"}}


def render(overlay: str) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    require(kubectl, "kubectl is not installed (scripts/provision-kubectl installs it)")
    assert kubectl is not None
    done = subprocess.run(
        [kubectl, "kustomize", str(KUBE / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


@pytest.fixture(scope="module", params=OVERLAYS)
def rendered(request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    return render(request.param)


def find(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    for doc in docs:
        if doc["kind"] == kind and doc["metadata"]["name"] == name:
            return doc
    raise AssertionError(f"no {kind} {name}")


def pod_spec(doc: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = doc["spec"]["template"]["spec"]
    return spec


def env_names(docs: list[dict[str, Any]], container: dict[str, Any]) -> set[str]:
    names = {e["name"] for e in container.get("env", [])}
    for source in container.get("envFrom", []):
        config = find(docs, "ConfigMap", source["configMapRef"]["name"])
        names |= set(config["data"])
    return names


def test_overlays_exist() -> None:
    assert {"production", "small"} <= set(OVERLAYS)


def test_every_object_validates_against_the_kubernetes_schemas(
    rendered: list[dict[str, Any]],
) -> None:
    assert len(rendered) >= 10
    for version in VERSIONS:
        for doc in rendered:
            kubernetes_validate.validate(doc, version, strict=True)
    adapter = yaml.safe_load((KUBE / "prometheus-adapter-rules.yaml").read_text())
    kubernetes_validate.validate(adapter, VERSIONS[-1], strict=True)
    rules = yaml.safe_load(adapter["data"]["rules.yaml"])
    assert rules["externalRules"][0]["name"]["as"] == "loom_queue_ready_steps"


def test_every_pod_runs_locked_down_with_resources(rendered: list[dict[str, Any]]) -> None:
    workloads = [d for d in rendered if d["kind"] in ("Deployment", "Job", "StatefulSet")]
    assert workloads
    for doc in workloads:
        name = doc["metadata"]["name"]
        spec = pod_spec(doc)
        assert spec["automountServiceAccountToken"] is False, name
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        for container in spec["containers"]:
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, name
            assert context["allowPrivilegeEscalation"] is False, name
            assert context["capabilities"]["drop"] == ["ALL"], name
            assert {"cpu", "memory"} <= set(container["resources"]["requests"]), name
            assert {"cpu", "memory"} <= set(container["resources"]["limits"]), name
            secrets = {
                e["name"]: e["valueFrom"]["secretKeyRef"]["name"]
                for e in container.get("env", [])
                if "secretKeyRef" in e.get("valueFrom", {})
            }
            if name == "linkloom-sandbox":  # the bundle key, nothing else
                assert secrets == {"LOOM_SANDBOX__REMOTE_KEY": "linkloom-secrets"}
                assert "envFrom" not in container
                continue
            assert secrets.get("LOOM_DATABASE__URL") == "linkloom-secrets", name
            assert secrets.get("LOOM_SECURITY__SIGNING_KEY") == "linkloom-secrets", name
    for doc in rendered:  # no secret value is ever shipped in the manifests
        assert doc["kind"] != "Secret", doc["metadata"]["name"]


def test_api_probes_workers_autoscale_and_budgets(rendered: list[dict[str, Any]]) -> None:
    api = pod_spec(find(rendered, "Deployment", "linkloom-api"))["containers"][0]
    assert api["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert api["readinessProbe"]["httpGet"]["path"] == "/readyz"
    hpa = find(rendered, "HorizontalPodAutoscaler", "linkloom-worker")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "linkloom-worker"
    metric = hpa["spec"]["metrics"][0]["external"]["metric"]["name"]
    assert metric == "loom_queue_ready_steps"
    for component in ("worker", "scheduler", "api"):
        template = find(rendered, "Deployment", f"linkloom-{component}")["spec"]["template"]
        annotations = template["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        budget = find(rendered, "PodDisruptionBudget", f"linkloom-{component}")
        labels = budget["spec"]["selector"]["matchLabels"]
        assert labels["app.kubernetes.io/component"] == component


def test_the_sandbox_service_has_no_egress_and_takes_bundles_only_from_the_api(
    rendered: list[dict[str, Any]],
) -> None:
    sandbox = pod_spec(find(rendered, "Deployment", "linkloom-sandbox"))
    assert sandbox["containers"][0]["args"][:2] == ["sandbox", "serve"]
    policy = find(rendered, "NetworkPolicy", "linkloom-sandbox")["spec"]
    assert policy["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "sandbox"
    assert "Egress" in policy["policyTypes"]
    assert policy["egress"] == []
    (allowed,) = policy["ingress"]
    (source,) = allowed["from"]
    assert source["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "api"
    api = pod_spec(find(rendered, "Deployment", "linkloom-api"))["containers"][0]
    env = {e["name"]: e.get("value") for e in api["env"]}
    assert env["LOOM_SANDBOX__BACKEND"] == "remote"
    service = find(rendered, "Service", "linkloom-sandbox")
    port = service["spec"]["ports"][0]["port"]
    assert env["LOOM_SANDBOX__REMOTE_URL"] == f"http://linkloom-sandbox:{port}"
    # One port everywhere: `loom sandbox serve`'s default, the container's, the Service's and
    # the one the NetworkPolicy lets the API reach.
    container = sandbox["containers"][0]
    assert container["args"][-2:] == ["--port", str(DEFAULT_SERVICE_PORT)]
    assert container["ports"][0]["containerPort"] == port == DEFAULT_SERVICE_PORT
    assert allowed["ports"] == [{"port": DEFAULT_SERVICE_PORT, "protocol": "TCP"}]


def test_no_disruption_budget_blocks_every_drain(rendered: list[dict[str, Any]]) -> None:
    """A budget whose ``minAvailable`` is as large as its pods' replicas lets no pod go, so a
    node drain waits forever."""
    budgets = [d for d in rendered if d["kind"] == "PodDisruptionBudget"]
    assert budgets
    for budget in budgets:
        keep = budget["spec"].get("minAvailable")
        if keep is None:
            continue
        wanted = budget["spec"]["selector"]["matchLabels"]
        [workload] = [
            d for d in rendered
            if d["kind"] == "Deployment"
            and wanted.items() <= d["spec"]["template"]["metadata"]["labels"].items()
        ]  # fmt: skip
        assert workload["spec"]["replicas"] > keep, budget["metadata"]["name"]


def test_every_overlay_installs_into_the_namespace_the_docs_create_the_secret_in(
    rendered: list[dict[str, Any]],
) -> None:
    for doc in rendered:
        assert doc["metadata"].get("namespace") == "linkloom", (doc["kind"], doc["metadata"])


def test_production_runs_two_schedulers_and_at_least_two_workers() -> None:
    docs = render("production")
    assert find(docs, "Deployment", "linkloom-scheduler")["spec"]["replicas"] == 2
    assert find(docs, "HorizontalPodAutoscaler", "linkloom-worker")["spec"]["minReplicas"] >= 2
    assert all(d["metadata"].get("namespace") == "linkloom" for d in docs)


def test_topology_matches_docker_compose(rendered: list[dict[str, Any]]) -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    loom_services = {
        name for name, service in compose.items() if "linkloom/server" in service.get("image", "")
    }
    # sandbox-image builds a docker image on the host's engine: compose only.
    assert loom_services - {"sandbox-image"} == set(COUNTERPARTS)
    for service, (kind, name) in COUNTERPARTS.items():
        container = pod_spec(find(rendered, kind, name))["containers"][0]
        assert container["args"] == compose[service]["command"], service
        assert container["image"].split(":")[0].endswith("linkloom/server"), service
        compose_names = {k for k in compose[service]["environment"] if k.startswith("LOOM_")}
        kube_names = env_names(rendered, container)
        assert compose_names - kube_names == COMPOSE_ONLY.get(service, set()), service
        assert kube_names - compose_names == KUBERNETES_ONLY.get(service, set()), service
