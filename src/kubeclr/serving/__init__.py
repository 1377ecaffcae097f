"""Using the encoder: the exported models (ONNX, TorchScript), their card, and the embedding service.

:mod:`embedder` wraps the encoder so it takes uint8 images and normalises inside;
:mod:`export` writes and checks the exported files; :mod:`card` describes them
(``model.json``); :mod:`server` serves them on the Open Inference Protocol (KServe SDK).
"""

# The export's folder (the pipeline's `model` output; `serve --model DIR` reads it).
MODEL_FILES = ("encoder.onnx", "encoder.ts", "classifier.onnx", "classifier.ts", "model.json")
