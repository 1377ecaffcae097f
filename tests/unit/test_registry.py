"""Registering the export with the Model Registry: the real client against a local fake of its REST API."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from kubeclr.cluster.registry import RegistryError, endpoint
from kubeclr.config import load_config
from kubeclr.errors import UserError
from kubeclr.steps import register_model

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/ helpers
from fake_registry_server import FakeRegistryServer

CARD = {
    "config_sha256": "ab" * 32,
    "kubeclr_version": "0.1.0",
    "onnx_opset": 18,
    "model": {"arch": "resnet18", "width": 64, "stem": "cifar", "feature_dim": 512},
    "input": {"shape": [-1, 3, 32, 32]},
    "metrics": {"linear": {"val_top1": 0.9, "test_top1": 0.88, "test_top5": 0.99}, "knn_test_top1": 0.85},
    "data": {"format": "cifar10", "license": "terms", "train_sha256": "cd" * 32},
}


def _model_dir(tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "model.json").write_text(json.dumps(CARD))
    return tmp_path / "model"


def test_each_run_is_a_new_version_with_its_metrics_and_digest(tmp_path):
    with FakeRegistryServer() as srv:
        cfg = load_config("smoke", None, [f"registry.url={srv.url}"])
        folder = _model_dir(tmp_path)
        first = register_model.run(cfg, folder, "s3://root/run-1/model", tmp_path / "r1.json", run_name="run-1")
        register_model.run(cfg, folder, "s3://root/run-2/model", tmp_path / "r2.json", run_name="run-2")
        with pytest.raises(RegistryError, match=r"Version run-1 already exists"):  # a run is registered once
            register_model.run(cfg, folder, "s3://root/run-1/model", tmp_path / "r3.json", run_name="run-1")
    st = srv.state
    assert [m["name"] for m in st.models.values()] == ["simclr-encoder"]  # one model, found again by name
    versions = sorted(st.versions.values(), key=lambda v: v["name"])
    assert [v["name"] for v in versions] == ["run-1", "run-2"] and versions[0]["author"] == "kubeclr"
    props = versions[0]["customProperties"]
    assert props["config_sha256"]["string_value"] == CARD["config_sha256"]
    assert props["linear_test_top1"]["double_value"] == 0.88 and props["feature_dim"]["int_value"] == "512"
    (artifact,) = st.artifacts[versions[0]["id"]]
    assert artifact["uri"] == "s3://root/run-1/model" and artifact["modelFormatName"] == "onnx"
    assert artifact["modelFormatVersion"] == "18"
    assert first["registered"] and json.loads((tmp_path / "r1.json").read_text()) == first


def test_without_a_url_nothing_is_called_and_bad_urls_are_one_line(tmp_path):
    result = register_model.run(load_config("smoke"), tmp_path, "s3://x", tmp_path / "r.json", run_name="r")
    assert result == {"registered": False, "reason": "registry.url is not set"}
    with pytest.raises(UserError, match=r"registry.url='ftp://h': expected http\(s\)://HOST\[:PORT\]"):
        endpoint("ftp://h")
    assert endpoint("https://mr.example") == ("https://mr.example", 443, True)
    cfg = load_config("smoke", None, ["registry.url=http://127.0.0.1:9"])  # nothing listens there
    with pytest.raises(RegistryError, match=r"^model registry http://127.0.0.1:9: "):
        register_model.run(cfg, _model_dir(tmp_path), "s3://x", tmp_path / "r.json", run_name="r")
