"""``simclr-pipeline serve``: its flags and the command (the server itself is :mod:`kubeclr.serving.server`)."""

from __future__ import annotations

import argparse
from typing import Any

from kubeclr.errors import UserError


def add_serve_parser(sub: Any, formatter: type[argparse.HelpFormatter]) -> None:
    p = sub.add_parser(
        "serve",
        formatter_class=formatter,
        help="serve an exported model (Open Inference Protocol v2, KServe)",
        description="Serve the export folder of a run (encoder.onnx, classifier.onnx, model.json: a local "
        "run's --output-dir, or the pipeline's model output) as model 'simclr-encoder': "
        "POST /v2/models/simclr-encoder/infer, GET /v2/health/ready. Needs pip install 'kubeclr[serve]'.",
    )
    p.add_argument("--model", required=True, metavar="DIR", help="the export folder")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    p.add_argument("--port", type=int, default=8080, help="HTTP port")
    p.add_argument("--max-batch", type=int, default=64, help="images per request")
    p.add_argument("--max-request-mb", type=float, default=32.0, help="largest request body, in MiB (413 above)")


def cmd_serve(args: argparse.Namespace) -> int:
    from kubeclr.serving.requests import RequestLimits
    from kubeclr.serving.server import serve

    if args.max_batch < 1 or args.max_request_mb <= 0 or not 0 < args.port < 65536:
        raise UserError("serve: --max-batch and --max-request-mb must be positive, --port 1..65535")
    serve(
        args.model,
        host=args.host,
        port=args.port,
        limits=RequestLimits(max_batch=args.max_batch),
        max_request_bytes=int(args.max_request_mb * 1024 * 1024),
    )
    return 0
