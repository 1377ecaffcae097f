"""The deploy step: deploys only a run that passed, publishes the export folder, creates then patches the
InferenceService on a fake API server, with exactly the verbs its Role grants; the object matches the manifest."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from kubeclr.cluster import inference
from kubeclr.cluster.k8s import K8sApi
from kubeclr.config import load_config
from kubeclr.errors import UserError
from kubeclr.report.canary import IMAGE_ENV
from kubeclr.serving import MODEL_FILES
from kubeclr.steps import deploy_model

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/ helpers
from fake_k8s_server import FakeK8s, FakeK8sServer

ROOT = Path(__file__).resolve().parents[2]
KUBECTL = shutil.which("kubectl", path=str(Path(sys.executable).parent)) or shutil.which("kubectl")


def _rendered_serving() -> list[dict]:
    proc = subprocess.run(
        [KUBECTL, "kustomize", str(ROOT / "manifests/overlays/serving")], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


def _metrics(tmp_path, test_top1=0.8, gate="pass"):
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps({"linear_eval": {"test_top1": test_top1}, "gate": {"status": gate}}))
    return path


def _model_dir(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    for name in MODEL_FILES:
        (folder / name).write_bytes(f"contents of {name}".encode())
    return folder


def _cfg(tmp_path, *sets):
    return load_config(
        "smoke", None, [f"storage.export_uri={(tmp_path / 'exports').as_uri()}", "deploy.namespace=ml", *sets]
    )


@pytest.mark.parametrize(
    "test_top1, gate, floor, expected",
    [
        (0.8, "pass", 0.0, True),
        (0.8, "warn", 0.5, True),
        (0.8, "not-armed", 0.0, True),
        (0.8, "fail", 0.0, False),  # a failed gate never deploys
        (0.4, "pass", 0.5, False),
    ],
)
def test_only_a_run_that_passed_is_deployed(tmp_path, test_top1, gate, floor, expected):
    cfg = load_config("smoke", None, [f"deploy.min_test_top1={floor}"])
    ok, why = deploy_model.decision(cfg, json.loads(_metrics(tmp_path, test_top1, gate).read_text()))
    assert ok is expected, why


def test_create_then_patch_on_the_api_server_with_exactly_the_roles_verbs(tmp_path, monkeypatch):
    monkeypatch.setenv(IMAGE_ENV, "ghcr.io/kubeclr/kubeclr:0.1.0")  # the pipeline sets it on the task
    state = FakeK8s(plurals=("inferenceservices",))
    cfg = _cfg(tmp_path)
    with FakeK8sServer(state) as srv:
        api = K8sApi(srv.url)
        first = deploy_model.run(
            cfg, _model_dir(tmp_path), _metrics(tmp_path), tmp_path / "r1.json", run_name="night 1", api=api
        )
        second = deploy_model.run(
            cfg, tmp_path / "model", _metrics(tmp_path), tmp_path / "r2.json", run_name="night-2", api=api
        )
    assert first["action"] == "created" and second["action"] == "updated"
    assert json.loads((tmp_path / "r2.json").read_text()) == second
    assert [r.method for r in state.requests] == ["GET", "POST", "GET", "PATCH"]
    assert state.of("PATCH")[0].headers["Content-Type"] == "application/merge-patch+json"
    assert state.requests[1].path == "/apis/serving.kserve.io/v1beta1/namespaces/ml/inferenceservices"
    served = state.jobs["ml/simclr-encoder"]
    (container,) = served["spec"]["predictor"]["containers"]
    assert container["env"] == [{"name": "STORAGE_URI", "value": f"{cfg.storage.export_uri}/night-2/model"}]
    assert container["image"] == "ghcr.io/kubeclr/kubeclr:0.1.0-serve"
    for run in ("night-1", "night-2"):  # published where STORAGE_URI points
        assert sorted(p.name for p in (tmp_path / "exports" / run / "model").iterdir()) == sorted(MODEL_FILES)
    verbs = {{"GET": "get", "POST": "create", "PATCH": "patch"}[r.method] for r in state.requests}
    role = next(
        o for o in _rendered_serving() if o["kind"] == "Role" and o["metadata"]["name"] == "kubeclr-model-deployer"
    )
    (rule,) = role["rules"]
    assert (rule["apiGroups"], rule["resources"], set(rule["verbs"])) == (
        ["serving.kserve.io"],
        ["inferenceservices"],
        verbs,
    )


def test_a_run_that_did_not_pass_calls_nothing_and_says_why(tmp_path):
    state = FakeK8s(plurals=("inferenceservices",))
    with FakeK8sServer(state) as srv:
        result = deploy_model.run(
            _cfg(tmp_path), _model_dir(tmp_path), _metrics(tmp_path, gate="fail"), tmp_path / "r.json",
            run_name="r", api=K8sApi(srv.url),
        )  # fmt: skip
    assert result == {"deployed": False, "reason": "the regression gate failed", "name": "simclr-encoder"}
    assert state.requests == [] and not (tmp_path / "exports").exists()


def test_refusals_are_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv(IMAGE_ENV, "ghcr.io/kubeclr/kubeclr:0.1.0")
    state = FakeK8s(plurals=())  # KServe not installed: the collection is unknown
    with FakeK8sServer(state) as srv, pytest.raises(UserError, match=r"is KServe installed\?"):
        deploy_model.run(
            _cfg(tmp_path),
            _model_dir(tmp_path),
            _metrics(tmp_path),
            tmp_path / "r.json",
            run_name="r",
            api=K8sApi(srv.url),
        )
    with pytest.raises(UserError, match=r"^deploy: set storage.export_uri"):
        deploy_model.run(
            load_config("smoke"), tmp_path / "model", _metrics(tmp_path), tmp_path / "r.json", run_name="r"
        )
    with pytest.raises(UserError, match=r"deploy.name='Bad_Name': must be a DNS-1123 label"):
        inference.inference_service("Bad_Name", "ml", "s3://b/m", "i:1")
    with pytest.raises(UserError, match="the pipeline's image is not known here: set deploy.image"):
        inference.serve_image("")
    with pytest.raises(UserError, match="has no tag to derive the serve image from: set deploy.image"):
        inference.serve_image("ghcr.io/kubeclr/kubeclr@sha256:" + "0" * 64)


def test_the_object_matches_the_manifest_and_its_container_is_a_valid_kubernetes_container():
    manifest = next(o for o in _rendered_serving() if o["kind"] == "InferenceService")
    (container,) = manifest["spec"]["predictor"]["containers"]
    built = inference.inference_service(
        manifest["metadata"]["name"], "kubeclr", container["env"][0]["value"], container["image"]
    )
    assert built["apiVersion"] == manifest["apiVersion"] and built["spec"] == manifest["spec"]
    assert built["metadata"]["annotations"] == manifest["metadata"]["annotations"]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "predictor"},
        "spec": {k: v for k, v in built["spec"]["predictor"].items() if k not in ("minReplicas", "maxReplicas")},
    }
    kubernetes_validate.validate(pod, "1.37.0", strict=True)  # PredictorSpec embeds a PodSpec
    gpu = inference.inference_service("simclr-encoder", "ml", "s3://b/m", "i:1", gpus=1)
    assert gpu["spec"]["predictor"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
