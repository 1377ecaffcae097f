"""The embedding service over real HTTP on loopback: v2 infer equals the exported model; bad requests are 4xx."""

from __future__ import annotations

import base64
import io
import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import onnxruntime as ort
import pytest
import torch
from PIL import Image

from kubeclr.config import load_config
from kubeclr.errors import UserError
from kubeclr.serving.server import check_port
from tests.export_fixtures import make_export
from tests.servers import EmbeddingServer, free_port

CFG = load_config("smoke", None, ["model.width=4"])
INFER = "/v2/models/simclr-encoder/infer"


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    return make_export(tmp_path_factory.mktemp("export"), CFG)


@pytest.fixture(scope="module")
def served(tmp_path_factory, exported):
    model = exported
    with EmbeddingServer(tmp_path_factory.mktemp("serve"), model, "--max-batch", "16", "--max-request-mb", "4") as s:
        yield s, model


def _post(server, body: dict | bytes, timeout: float = 30.0):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(server.url + INFER, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


def _tensor(images: np.ndarray) -> dict:
    return {"name": "images", "datatype": "UINT8", "shape": list(images.shape), "data": images.reshape(-1).tolist()}


def _images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)


def _onnx(model, images: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(model / "encoder.onnx"), providers=["CPUExecutionProvider"])
    return session.run(["embedding"], {"images": images})[0]


def _ready(server) -> bool:
    with urllib.request.urlopen(server.url + "/v2/health/ready", timeout=5) as resp:
        return resp.status == 200 and json.loads(resp.read())["ready"] is True


def test_embeddings_over_http_equal_the_exported_models(served):
    server, model = served
    images = _images(3)
    status, body = _post(server, {"inputs": [_tensor(images)]})
    assert status == 200 and body["model_name"] == "simclr-encoder"
    (out,) = body["outputs"]
    assert (out["name"], out["datatype"], out["shape"]) == ("embedding", "FP32", [3, 32])
    got = np.asarray(out["data"], dtype=np.float32).reshape(out["shape"])
    assert np.abs(got - _onnx(model, images)).max() <= 1e-5
    with torch.no_grad():
        scripted = torch.jit.load(str(model / "encoder.ts"))(torch.from_numpy(images)).numpy()
    assert np.abs(got - scripted).max() <= 1e-4


def test_png_and_jpeg_images_and_class_probabilities(served):
    server, model = served
    images = _images(2, seed=1)
    encoded = []
    for i, fmt in enumerate(("PNG", "JPEG")):
        buf = io.BytesIO()
        Image.fromarray(images[i].transpose(1, 2, 0)).save(buf, format=fmt, quality=95)
        encoded.append(base64.b64encode(buf.getvalue()).decode())
    request = {"inputs": [{"name": "images", "datatype": "BYTES", "shape": [2], "data": encoded}]}
    status, body = _post(server, {**request, "outputs": [{"name": "probabilities"}]})
    assert status == 200, body
    outputs = {o["name"]: np.asarray(o["data"], dtype=np.float32).reshape(o["shape"]) for o in body["outputs"]}
    assert outputs["embedding"].shape == (2, 32) and outputs["probabilities"].shape == (2, 4)
    assert np.allclose(outputs["probabilities"].sum(1), 1.0, atol=1e-5)
    # PNG is lossless: the same pixels as the tensor request
    assert np.abs(outputs["embedding"][0] - _onnx(model, images[:1])[0]).max() <= 1e-5


def _raw_oversized(server, size: int) -> tuple[int, dict]:
    """A client that announces ``size`` bytes and sends the first MiB: the server answers before reading the rest."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        head = f"POST {INFER} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {size}\r\n\r\n"
        sock.sendall(head.encode() + b"[" * (1 << 20))
        reply = b""
        while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            reply += chunk
    status = int(reply.split(b" ", 2)[1])
    return status, json.loads(reply.split(b"\r\n\r\n", 1)[1])


@pytest.mark.parametrize(
    "request_body, status, fragment",
    [
        ({"inputs": [{**_tensor(_images(1)), "datatype": "FP32"}]}, 400, "datatype FP32, expected UINT8"),
        ({"inputs": [{**_tensor(_images(1)), "shape": [1, 3, 16, 64]}]}, 400, "expected [B, 3, 32, 32]"),
        ({"inputs": [{**_tensor(_images(2)), "shape": [1, 3, 32, 32]}]}, 400, "6144 values for shape [1, 3, 32, 32]"),
        ({"inputs": [{**_tensor(_images(1)), "data": [300] * 3072}]}, 400, "values must be 0..255"),
        ({"inputs": [_tensor(_images(17))]}, 400, "17 images, more than the limit of 16"),
        (
            {
                "inputs": [
                    {
                        "name": "images",
                        "datatype": "BYTES",
                        "shape": [1],
                        "data": [base64.b64encode(b"\x89PNG\r\n\x1a\nbroken").decode()],
                    }
                ]
            },
            400,
            "not a JPEG, PNG or WEBP image",
        ),
        ({"inputs": [{"name": "images", "datatype": "BYTES", "shape": [1], "data": ["%%%"]}]}, 400, "not base64"),
        (
            {"inputs": [{"name": "pixels", "datatype": "UINT8", "shape": [1], "data": [1]}]},
            400,
            "one input named 'images'",
        ),
        ({"inputs": [_tensor(_images(1))], "outputs": [{"name": "logits"}]}, 400, "unknown output 'logits'"),
        ({"images": []}, 422, "inputs"),  # the v2 schema: a missing field
        (b"not json", 422, ""),
    ],
)
def test_bad_requests_get_a_4xx_with_a_message_and_the_server_keeps_serving(served, request_body, status, fragment):
    server, _ = served
    got, body = _post(server, request_body)
    assert got == status, body
    assert fragment in json.dumps(body)
    assert _ready(server)


def test_a_50_mb_body_is_refused_with_413_and_the_server_keeps_serving(served):
    server, _ = served
    status, body = _raw_oversized(server, 50 * 1024 * 1024)
    assert status == 413 and "larger than" in body["error"]
    assert _ready(server) and _post(server, {"inputs": [_tensor(_images(1))]})[0] == 200


def test_a_bounded_load_of_500_requests_8_at_a_time_has_no_errors(served):
    server, _ = served
    body = {"inputs": [_tensor(_images(4, seed=2))]}

    def one(_):
        start = time.perf_counter()
        status, _ = _post(server, body)
        return status, time.perf_counter() - start

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(one, range(500)))
    assert [s for s, _ in results if s != 200] == []


def test_serve_refuses_a_folder_that_is_not_an_export(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "kubeclr.cli", "serve", "--model", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        f"error: --model {tmp_path}: no encoder.onnx, model.json (expected the export folder of a run)"
    ]


def _serve(model, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "kubeclr.cli", "serve", "--model", str(model), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_serve_refuses_a_truncated_onnx_file_in_one_line(exported, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(exported, model)
    whole = (model / "encoder.onnx").read_bytes()
    (model / "encoder.onnx").write_bytes(whole[: len(whole) // 3])  # a copy cut short
    proc = _serve(model, "--port", str(free_port()))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert [line for line in proc.stderr.splitlines() if line.strip()] == [
        f"error: --model {model}: encoder.onnx is not a valid ONNX model (InvalidProtobuf: truncated or corrupt?); "
        "export it again (a local run writes it to --output-dir, a pipeline run to its model output)"
    ]


def test_serve_on_a_port_in_use_says_so_in_one_line_before_serving(exported):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = _serve(exported, "--port", str(port))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert [line for line in proc.stderr.splitlines() if line.strip()] == [
        f"error: port {port} on 127.0.0.1 is already in use (choose another with --port)"
    ]  # nothing claimed to be serving first


def test_check_port_passes_a_free_port_and_names_a_taken_one():
    port = free_port()
    check_port("127.0.0.1", port)  # free: nothing raised, and nothing left bound
    check_port("127.0.0.1", port)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        with pytest.raises(UserError, match=f"^port {port} on 127.0.0.1 is already in use"):
            check_port("127.0.0.1", port)
    with pytest.raises(UserError, match="^--host no-such-host.invalid: not an address of this machine"):
        check_port("no-such-host.invalid", port)


def test_a_model_without_labels_serves_embeddings_and_refuses_probabilities_in_one_line(tmp_path):
    from kubeclr.steps import export_model
    from tests.export_fixtures import step_inputs

    inputs = step_inputs(tmp_path, CFG, classifier_state={"class_names": [], "protocol": None})  # no labels
    export_model.run(CFG, *inputs, tmp_path / "model", run_name="unlabelled")
    with EmbeddingServer(tmp_path / "serve", tmp_path / "model") as server:
        images = _images(2)
        status, body = _post(server, {"inputs": [_tensor(images)]})
        assert status == 200 and [o["name"] for o in body["outputs"]] == ["embedding"]
        status, body = _post(server, {"inputs": [_tensor(images)], "outputs": [{"name": "probabilities"}]})
        assert status == 400 and "no classifier (its run had no labels)" in json.dumps(body)
