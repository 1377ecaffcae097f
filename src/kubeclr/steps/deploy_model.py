"""The ``deploy_model`` step (``compile --deploy``): publish the new model and point the InferenceService at it.

Runs after the report. It deploys only when the run passed: a failed regression gate never
deploys, and ``deploy.min_test_top1`` sets a floor on the linear test accuracy. Then it copies
the export folder to ``<storage.export_uri>/<run_name>/model/`` and creates or patches the KServe
InferenceService ``deploy.name`` (:mod:`kubeclr.cluster.inference`) to serve it. A run that does
not deploy says why, and succeeds.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from kubeclr.atomic import read_json, write_json
from kubeclr.cluster import inference
from kubeclr.cluster.k8s import K8sApi, own_namespace
from kubeclr.config import Config
from kubeclr.errors import UserError
from kubeclr.report.canary import IMAGE_ENV
from kubeclr.serving import MODEL_FILES
from kubeclr.steps.report import export_results
from kubeclr.uri import safe_segment

log = logging.getLogger(__name__)


def decision(cfg: Config, metrics: dict[str, Any]) -> tuple[bool, str]:
    """Whether this run's model goes out, and why (from its ``metrics.json``)."""
    gate = (metrics.get("gate") or {}).get("status")
    if gate == "fail":
        return False, "the regression gate failed"
    floor = cfg.deploy.min_test_top1
    if metrics.get("linear_eval") is None:  # a run without labels: an encoder with no accuracy to check
        if floor:
            return False, f"the run had no labels, so no accuracy to hold to deploy.min_test_top1={floor}"
        return True, f"an encoder without labels (no accuracy), gate {gate or 'off'}"
    top1 = float(metrics["linear_eval"]["test_top1"])
    if top1 < floor:
        return False, f"linear test top-1 {top1:.4f} is below deploy.min_test_top1={floor}"
    return True, f"linear test top-1 {top1:.4f}" + (f" >= {floor}" if floor else "") + f", gate {gate or 'off'}"


def run(
    cfg: Config,
    model_dir: str | Path,
    metrics_path: str | Path,
    result_out: str | Path,
    *,
    run_name: str,
    api: K8sApi | None = None,
) -> dict:
    """Deploy the export folder ``model_dir`` when the run passed; write what happened to ``result_out``.

    Args:
        api: the Kubernetes API (default: this pod's cluster).

    Raises:
        UserError: no ``storage.export_uri`` (the predictor loads the model from object storage),
            a bad ``deploy.name``, no serve image, or an API server that refuses.
    """
    ok, why = decision(cfg, read_json(metrics_path))
    result: dict[str, Any] = {"deployed": False, "reason": why, "name": cfg.deploy.name}
    if ok:
        if not cfg.storage.export_uri:
            raise UserError("deploy: set storage.export_uri (the InferenceService loads the model from object storage)")
        image = cfg.deploy.image or inference.serve_image(os.environ.get(IMAGE_ENV, ""))
        files = {f"model/{name}": Path(model_dir) / name for name in MODEL_FILES if (Path(model_dir) / name).is_file()}
        published = export_results(cfg.storage.export_uri, run_name, files)
        storage_uri = published[0].rsplit("/", 1)[0]  # <export_uri>/<run>/model, as export_results lays it out
        namespace = cfg.deploy.namespace or own_namespace()
        isvc = inference.inference_service(
            cfg.deploy.name,
            namespace,
            storage_uri,
            image,
            gpus=cfg.deploy.gpus,
            labels={"kubeclr.io/run": safe_segment(run_name)[:63].strip("-._") or "run"},
        )
        action = inference.apply(api or K8sApi.in_cluster(), isvc)
        result |= {"deployed": True, "action": action, "storage_uri": storage_uri, "namespace": namespace}
        log.info(
            "deployed: InferenceService %s/%s %s, serving %s (%s)", namespace, cfg.deploy.name, action, storage_uri, why
        )
    else:
        log.warning("not deployed: %s", why)
    write_json(result_out, result)
    return result
