"""The exported models compute what PyTorch computes; a bad export fails loudly and leaves nothing behind."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest
import torch

from kubeclr.config import config_digest, load_config
from kubeclr.errors import DataError
from kubeclr.eval.features import extract_features
from kubeclr.serving import MODEL_FILES, export
from kubeclr.serving.embedder import Classifier, Embedder
from kubeclr.steps import export_model
from tests.export_fixtures import MEAN, STD, random_encoder, random_images, step_inputs

CFG = load_config("smoke", None, ["model.width=4"])


def test_the_embedder_is_the_feature_extractor_of_linear_eval():
    encoder, images = random_encoder(CFG), random_images(6)
    expected = extract_features(encoder, images, MEAN, STD, device=torch.device("cpu"), batch_size=4)
    with torch.no_grad():
        got = Embedder(encoder, MEAN, STD)(images)
    assert torch.allclose(got, expected, atol=1e-6)


def test_the_classifier_is_the_linear_probes_softmax():
    g = torch.Generator().manual_seed(1)
    state = {"weight": torch.randn(3, 8, generator=g), "bias": torch.randn(3, generator=g)}
    state |= {"mean": torch.randn(8, generator=g), "std": torch.rand(8, generator=g) + 0.5}
    x = torch.randn(5, 8, generator=g)
    logits = ((x - state["mean"]) / state["std"]) @ state["weight"].T + state["bias"]
    with torch.no_grad():
        assert torch.allclose(Classifier(state)(x), torch.softmax(logits, 1), atol=1e-6)


def test_onnx_and_torchscript_round_trip_within_tolerance_at_any_batch_size(tmp_path):
    embedder = Embedder(random_encoder(CFG), MEAN, STD)
    facts = export.export_pair(embedder, random_images(8), tmp_path, "encoder", export.ENCODER_IO)
    assert max(facts["max_abs_diff"].values()) <= export.TOLERANCE
    session = ort.InferenceSession(str(tmp_path / "encoder.onnx"), providers=["CPUExecutionProvider"])
    (inp,), (out,) = session.get_inputs(), session.get_outputs()
    assert (inp.name, inp.type, inp.shape[1:]) == ("images", "tensor(uint8)", [3, 32, 32]) and isinstance(
        inp.shape[0], str
    )
    assert (out.name, out.type) == ("embedding", "tensor(float)")
    other = random_images(13, seed=5)  # a batch size the export never saw
    with torch.no_grad():
        expected = embedder(other).numpy()
        scripted = torch.jit.load(str(tmp_path / "encoder.ts"))(other).numpy()
    (got,) = session.run(["embedding"], {"images": other.numpy()})
    assert np.abs(got - expected).max() <= 1e-4 and np.abs(scripted - expected).max() <= 1e-4


def test_an_export_that_computes_something_else_fails_loudly(tmp_path):
    embedder = Embedder(random_encoder(CFG, 0), MEAN, STD)
    images = random_images(4)
    other = Embedder(random_encoder(CFG, 1), MEAN, STD)  # other weights
    export.to_onnx(other, images, tmp_path / "e.onnx", export.ENCODER_IO)
    export.to_torchscript(embedder, images, tmp_path / "e.ts")
    with pytest.raises(
        export.ExportError, match=r"^onnx export differs from the PyTorch model by .* \(> 0.0001\) on 4"
    ):
        export.check(embedder, tmp_path / "e.onnx", tmp_path / "e.ts", images, export.ENCODER_IO)


def test_the_step_writes_the_folder_and_a_card_that_matches_the_run(tmp_path):
    card = export_model.run(CFG, *step_inputs(tmp_path, CFG), tmp_path / "model", run_name="r1")
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == sorted(MODEL_FILES)
    saved = json.loads((tmp_path / "model" / "model.json").read_text())
    assert saved == card and card["config_sha256"] == config_digest(CFG) and card["run_name"] == "r1"
    assert card["input"] == {
        "name": "images",
        "datatype": "UINT8",
        "layout": "NCHW",
        "shape": [-1, 3, 32, 32],
        "normalisation": {"mean": MEAN, "std": STD, "inside": True},
    }
    assert card["output"] == {"name": "embedding", "datatype": "FP32", "shape": [-1, 32]}
    assert card["classifier"]["classes"] == list("abcd") and card["metrics"]["linear"]["test_top1"] == 0.25
    assert card["validation"]["encoder"]["images"] == export_model.CHECK_IMAGES and card["onnx_opset"] == export.OPSET
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".model")] == []  # no staging left


def test_a_failed_check_or_a_bad_classifier_leaves_no_folder(tmp_path, monkeypatch):
    inputs = step_inputs(tmp_path, CFG)
    monkeypatch.setattr(export, "TOLERANCE", -1.0)  # nothing passes
    with pytest.raises(export.ExportError):
        export_model.run(CFG, *inputs, tmp_path / "model", run_name="r")
    monkeypatch.undo()
    torch.save({"weight": torch.zeros(2, 2)}, tmp_path / "classifier.pt")  # no class names, wrong size
    with pytest.raises(DataError, match=r"classifier .*classifier.pt: not linear_eval's classifier"):
        export_model.run(CFG, *inputs, tmp_path / "model", run_name="r")
    assert not (tmp_path / "model").exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".model")]


def test_a_run_without_labels_exports_the_encoder_alone_and_serves_embeddings_only(tmp_path):
    from kubeclr.serving.server import Encoder

    inputs = step_inputs(tmp_path, CFG, classifier_state={"class_names": [], "protocol": None})  # linear_eval's
    card = export_model.run(CFG, *inputs, tmp_path / "model", run_name="unlabelled")
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == ["encoder.onnx", "encoder.ts", "model.json"]
    assert card["classifier"] is None and card["metrics"] is None and card["labelled"] is False
    assert set(card["files"]) == {"encoder.onnx", "encoder.ts"} and set(card["validation"]) >= {"encoder"}
    served = Encoder(tmp_path / "model")
    assert not served.has_classifier
    assert served.embed(random_images(3).numpy()).shape == (3, 32)
