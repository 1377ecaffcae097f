"""``simclr-pipeline serve``: the exported encoder on the Open Inference Protocol (v2), with KServe's server.

``POST /v2/models/simclr-encoder/infer`` takes an ``images`` input (:mod:`kubeclr.serving.requests`)
and returns ``embedding`` (``FP32`` ``[B, D]``); asking for the ``probabilities`` output
(``"outputs": [{"name": "probabilities"}]``) adds the linear probe's class probabilities
(``FP32`` ``[B, C]``, classes in ``model.json``). ``GET /v2/health/ready`` says when the model is
loaded. The models run in onnxruntime (ONNX is protobuf: nothing is unpickled); a body larger
than the limit is refused with 413 before it is read whole.
"""

from __future__ import annotations

import errno
import json
import logging
import socket
import sys
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from kubeclr.errors import UserError
from kubeclr.serving.card import MODEL_NAME
from kubeclr.serving.export import CLASSIFIER_IO, ENCODER_IO
from kubeclr.serving.requests import RequestError, RequestLimits, request_images

log = logging.getLogger(__name__)

DEFAULT_MAX_REQUEST_BYTES = 32 * 1024 * 1024


def read_card(model_dir: Path) -> dict:
    """``model.json`` of an export folder, with the files it names present.

    Raises:
        UserError: not an export folder (a file missing, a card that is not this format's).
    """
    missing = [name for name in ("encoder.onnx", "model.json") if not (model_dir / name).is_file()]
    if missing:
        raise UserError(f"--model {model_dir}: no {', '.join(missing)} (expected the export folder of a run)")
    try:
        card = json.loads((model_dir / "model.json").read_text())
        size = int(card["input"]["shape"][2])
        int(card["output"]["shape"][1])
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise UserError(f"--model {model_dir}: model.json is not a kubeclr model card ({type(exc).__name__})") from None
    if card.get("classifier") is not None and not (model_dir / "classifier.onnx").is_file():
        raise UserError(f"--model {model_dir}: no classifier.onnx, which model.json names")
    if size < 1:
        raise UserError(f"--model {model_dir}: model.json gives an input size of {size}")
    return card


class Encoder:
    """The exported encoder and probe in onnxruntime: uint8 ``(B, 3, S, S)`` → embeddings (and probabilities)."""

    def __init__(self, model_dir: Path, threads: int = 0) -> None:
        import onnxruntime as ort

        self.card = read_card(model_dir)
        self.size = int(self.card["input"]["shape"][2])
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        self._encoder = _session(model_dir, "encoder.onnx", options)
        # a model of a run without labels has no classifier (model.json says so)
        self._classifier = _session(model_dir, "classifier.onnx", options) if self.card.get("classifier") else None

    def embed(self, images: np.ndarray) -> np.ndarray:
        return self._encoder.run([ENCODER_IO[1]], {ENCODER_IO[0]: images})[0]

    @property
    def has_classifier(self) -> bool:
        return self._classifier is not None

    def classify(self, features: np.ndarray) -> np.ndarray:
        return self._classifier.run([CLASSIFIER_IO[1]], {CLASSIFIER_IO[0]: features})[0]


def _session(model_dir: Path, name: str, options: Any) -> Any:
    """An onnxruntime session of ``model_dir / name`` on the CPU.

    Raises:
        UserError: the file is not a model onnxruntime can load (truncated, corrupt, not ONNX).
    """
    import onnxruntime as ort
    from onnxruntime.capi import onnxruntime_pybind11_state as ort_errors

    try:
        return ort.InferenceSession(str(model_dir / name), options, providers=["CPUExecutionProvider"])
    except (
        ort_errors.InvalidProtobuf,
        ort_errors.InvalidGraph,
        ort_errors.InvalidArgument,
        ort_errors.NotImplemented,
        ort_errors.Fail,
    ) as exc:
        raise UserError(
            f"--model {model_dir}: {name} is not a valid ONNX model ({type(exc).__name__}: truncated or corrupt?); "
            "export it again (a local run writes it to --output-dir, a pipeline run to its model output)"
        ) from None


def check_port(host: str, port: int) -> None:
    """Refuse ``host:port`` now if a server cannot listen there (bound by another process, not an address here).

    The test binds as uvicorn will (``SO_REUSEADDR``), so a port left in TIME_WAIT counts as free.

    Raises:
        UserError: one line naming the port and the host.
    """
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        raise UserError(f"--host {host}: not an address of this machine ({exc.strerror})") from None
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise UserError(f"port {port} on {host} is already in use (choose another with --port)") from None
            if exc.errno == errno.EACCES:
                raise UserError(f"port {port} on {host} needs privileges (choose one above 1023 with --port)") from None
            raise UserError(f"cannot listen on {host} port {port}: {exc.strerror}") from None


def _kserve_model(encoder: Encoder, limits: RequestLimits):
    import kserve
    from kserve.errors import InvalidInput
    from kserve.protocol.infer_type import InferOutput, InferResponse

    class EmbeddingModel(kserve.Model):
        def __init__(self) -> None:
            super().__init__(MODEL_NAME)
            self.ready = True  # the sessions are loaded before the server starts

        async def predict(self, payload: Any, headers: Any = None, response_headers: Any = None) -> Any:
            if not hasattr(payload, "inputs"):
                raise InvalidInput("expected an Open Inference Protocol (v2) request with an 'inputs' list")
            try:
                images = request_images(payload.inputs, size=encoder.size, limits=limits)
            except RequestError as exc:
                raise InvalidInput(str(exc)) from None
            wanted = {o.name for o in (payload.request_outputs or [])} or {ENCODER_IO[1]}
            unknown = sorted(wanted - {ENCODER_IO[1], CLASSIFIER_IO[1]})
            if unknown:
                raise InvalidInput(f"unknown output {unknown[0]!r} (outputs: {ENCODER_IO[1]}, {CLASSIFIER_IO[1]})")
            features = encoder.embed(images)
            tensors = {ENCODER_IO[1]: features}
            if CLASSIFIER_IO[1] in wanted:
                if not encoder.has_classifier:
                    raise InvalidInput(
                        f"this model has no classifier (its run had no labels): ask for {ENCODER_IO[1]} only"
                    )
                tensors[CLASSIFIER_IO[1]] = encoder.classify(features)
            outputs = []
            for name, array in tensors.items():
                out = InferOutput(name=name, shape=list(array.shape), datatype="FP32")
                out.set_data_from_numpy(np.ascontiguousarray(array, dtype=np.float32), binary_data=False)
                outputs.append(out)
            return InferResponse(
                response_id=payload.id or str(uuid.uuid4()), model_name=self.name, infer_outputs=outputs
            )

    return EmbeddingModel()


def _body_limit(app: Any, max_bytes: int) -> Any:
    """ASGI middleware: 413 for a body over ``max_bytes`` (by Content-Length, or counted as it streams)."""

    async def reject(send: Any) -> None:
        body = json.dumps({"error": f"request body larger than {max_bytes} bytes"}).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),  # the rest of the body is never read
        ]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def middleware(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await app(scope, receive, send)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > max_bytes:
            return await reject(send)
        seen = 0

        async def counted() -> Any:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > max_bytes:
                raise RequestError("body too large")
            return message

        try:
            await app(scope, counted, send)
        except RequestError:
            await reject(send)

    return middleware


def serve(
    model_dir: str | Path,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    limits: RequestLimits = RequestLimits(),
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
) -> None:
    """Serve the export folder ``model_dir`` until interrupted.

    Raises:
        UserError: not an export folder or a model file that does not load, the ``[serve]`` extra
            (kserve) not installed, or a port that is taken.
    """
    encoder = Encoder(Path(model_dir))
    argv, sys.argv = sys.argv, sys.argv[:1]  # KServe parses the command line on import (`--model` → its --model_name)
    try:
        from kserve import model_server
        from kserve.protocol.rest import server as rest
    except ImportError:
        raise UserError("serve needs the KServe SDK: pip install 'kubeclr[serve]'") from None
    finally:
        sys.argv = argv

    check_port(host, port)  # before anything says "serving", and in one line (uvicorn: a log and exit 3)

    class Server(rest.RESTServer):  # KServe binds 0.0.0.0; this binds where we are told, and limits bodies
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.config.host = host
            listen = self._server.startup

            async def startup(*a: Any, **kw: Any) -> None:
                await listen(*a, **kw)  # binds the port (or exits): only then is the model being served
                log.info(
                    "serving %s (%s, %d px, %d-d embeddings) on http://%s:%d/v2/models/%s/infer",
                    model_dir,
                    encoder.card["model"]["arch"],
                    encoder.size,
                    int(encoder.card["output"]["shape"][1]),
                    host,
                    port,
                    MODEL_NAME,
                )

            self._server.startup = startup

        def _add_middlewares(self, app: Any) -> None:
            super()._add_middlewares(app)
            app.add_middleware(lambda inner: _body_limit(inner, max_request_bytes))

    model_server.RESTServer = Server
    model_server.ModelServer(http_port=port, enable_grpc=False, workers=1).start([_kserve_model(encoder, limits)])
