"""Export the encoder and the linear probe to ONNX and TorchScript, and check them against PyTorch.

Both exported encoders take uint8 ``(B, 3, H, W)`` (any batch size; ONNX declares the batch axis
dynamic) and return float32 ``(B, D)``. Each is loaded back (onnxruntime, ``torch.jit.load``) and
run on real test images at two batch sizes; a difference from the PyTorch module above
:data:`TOLERANCE` fails the export with one line, and nothing is left behind.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from kubeclr.errors import UserError

log = logging.getLogger(__name__)

OPSET = 18  # ONNX opset of the exported graphs (onnxruntime >= 1.14 runs it)
TOLERANCE = 1e-4  # max |exported - PyTorch| on the check images, fp32
MAX_BATCH = 4096  # the ONNX batch axis' declared upper bound
ENCODER_IO = ("images", "embedding")
CLASSIFIER_IO = ("features", "probabilities")


class ExportError(UserError):
    """An exported model that does not compute what the PyTorch model computes."""


@contextlib.contextmanager
def _quiet():
    """The exporters' progress prints and deprecation warnings stay out of the step's log."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


def to_onnx(module: nn.Module, example: torch.Tensor, path: Path, io_names: tuple[str, str]) -> None:
    """Write ``module`` as ONNX at ``path``: one file, batch axis dynamic."""
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    with _quiet(), torch.no_grad():
        torch.onnx.export(
            module.eval(),
            (example,),
            str(path),
            input_names=[io_names[0]],
            output_names=[io_names[1]],
            dynamo=True,
            external_data=False,
            dynamic_shapes={io_names[0]: {0: batch}},  # the forward argument's name
            opset_version=OPSET,
        )


def to_torchscript(module: nn.Module, example: torch.Tensor, path: Path) -> None:
    with _quiet(), torch.no_grad():
        torch.jit.trace(module.eval(), example).save(str(path))


def _loaded(onnx_path: Path, ts_path: Path, io_names: tuple[str, str]) -> dict:
    """Both files loaded back, each as ``fn(batch tensor) -> array``: loaded once, run on every check batch."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    with _quiet():
        scripted = torch.jit.load(str(ts_path), map_location="cpu")
    return {
        "onnx": lambda x: session.run([io_names[1]], {io_names[0]: x.numpy()})[0],
        "torchscript": lambda x: scripted(x).numpy(),
    }


def check(module: nn.Module, onnx_path: Path, ts_path: Path, inputs: torch.Tensor, io_names: tuple[str, str]) -> dict:
    """Max |exported - PyTorch| of both files on ``inputs`` (whole, and its first image alone).

    Raises:
        ExportError: a difference above :data:`TOLERANCE`, or a wrong output shape.
    """
    runners = _loaded(onnx_path, ts_path, io_names)
    diffs = dict.fromkeys(runners, 0.0)
    with torch.no_grad():
        for batch in (inputs, inputs[:1]):  # two batch sizes: the batch axis really is dynamic
            expected = module.eval()(batch).numpy()
            for name, run in runners.items():
                got = run(batch)
                if got.shape != expected.shape:
                    raise ExportError(f"{name} export: output shape {got.shape}, expected {expected.shape}")
                diffs[name] = max(diffs[name], float(np.abs(got - expected).max()))
    for name, diff in diffs.items():
        if not diff <= TOLERANCE:
            raise ExportError(
                f"{name} export differs from the PyTorch model by {diff:.3g} (> {TOLERANCE:g}) on "
                f"{len(inputs)} test images"
            )
    return diffs


def export_pair(
    module: nn.Module, example: torch.Tensor, folder: Path, stem: str, io_names: tuple[str, str]
) -> dict[str, Any]:
    """Write ``<stem>.onnx`` and ``<stem>.ts`` in ``folder`` and check them on ``example``."""
    onnx_path, ts_path = folder / f"{stem}.onnx", folder / f"{stem}.ts"
    to_onnx(module, example, onnx_path, io_names)
    to_torchscript(module, example, ts_path)
    diffs = check(module, onnx_path, ts_path, example, io_names)
    log.info("exported %s.onnx (opset %d) and %s.ts: max |diff| %s", stem, OPSET, stem, diffs)
    return {"max_abs_diff": diffs, "images": int(example.shape[0])}
