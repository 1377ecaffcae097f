"""The KServe InferenceService that serves an exported model, and its create-or-patch.

:func:`inference_service` builds the object of ``manifests/components/serving`` for one model
(``simclr-pipeline serve`` in the serve image, the export folder as ``STORAGE_URI``, which KServe's
storage initializer copies to ``/mnt/models``). :func:`apply` makes the cluster hold it: GET, then
POST when it is missing or a JSON merge patch of its spec when it exists. Those three calls are
all the RBAC the deploy step needs (``kubeclr-model-deployer``).
"""

from __future__ import annotations

import re
from typing import Any

from kubeclr.cluster.k8s import GPU_RESOURCE, K8sApi, K8sError
from kubeclr.errors import UserError

GROUP_VERSION = "serving.kserve.io/v1beta1"
SERVICE_ACCOUNT = "kubeclr-inference"
PORT = 8080
MODEL_MOUNT = "/mnt/models"
_DNS_1123 = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def serve_image(pipeline_image: str) -> str:
    """The serve target of the pipeline's image: ``REPO:TAG`` → ``REPO:TAG-serve``.

    Raises:
        UserError: no image, or a digest-pinned one (no tag to derive from: set ``deploy.image``).
    """
    if not pipeline_image:
        raise UserError("the pipeline's image is not known here: set deploy.image (the serve image)")
    if "@" in pipeline_image or ":" not in pipeline_image.rsplit("/", 1)[-1]:
        raise UserError(f"image {pipeline_image!r} has no tag to derive the serve image from: set deploy.image")
    return f"{pipeline_image}-serve"


def inference_service(
    name: str, namespace: str, storage_uri: str, image: str, *, gpus: int = 0, labels: dict | None = None
) -> dict[str, Any]:
    """The InferenceService serving the export folder at ``storage_uri``.

    Raises:
        UserError: a name that is not a DNS-1123 label.
    """
    if not _DNS_1123.match(name):
        raise UserError(f"deploy.name={name!r}: must be a DNS-1123 label (lower case letters, digits, '-')")
    limits: dict[str, str] = {"cpu": "2", "memory": "2Gi"}
    if gpus:
        limits[GPU_RESOURCE] = str(gpus)
    container = {
        "name": "kserve-container",
        "image": image,
        "args": ["simclr-pipeline", "serve", "--model", MODEL_MOUNT, "--host", "0.0.0.0", "--port", str(PORT)],
        "env": [{"name": "STORAGE_URI", "value": storage_uri}],
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
        "ports": [{"name": "http1", "containerPort": PORT, "protocol": "TCP"}],
        "readinessProbe": {"httpGet": {"path": "/v2/health/ready", "port": PORT}, "periodSeconds": 10},
        "livenessProbe": {"httpGet": {"path": "/v2/health/live", "port": PORT}, "periodSeconds": 20},
        "resources": {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": limits},
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 10001,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }
    return {
        "apiVersion": GROUP_VERSION,
        "kind": "InferenceService",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/part-of": "kubeclr", **(labels or {})},
            "annotations": {"serving.kserve.io/deploymentMode": "RawDeployment"},
        },
        "spec": {
            "predictor": {
                "serviceAccountName": SERVICE_ACCOUNT,
                "minReplicas": 1,
                "maxReplicas": 2,
                "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}}],
                "containers": [container],
            }
        },
    }


def apply(api: K8sApi, isvc: dict[str, Any]) -> str:
    """Create ``isvc`` or patch the one of that name; return ``'created'`` or ``'updated'``.

    Raises:
        K8sError: the API server refused (the message names the call and its answer).
    """
    meta = isvc["metadata"]
    collection = f"/apis/{GROUP_VERSION}/namespaces/{meta['namespace']}/inferenceservices"
    try:
        api.request("GET", f"{collection}/{meta['name']}")
    except K8sError as exc:
        if exc.status != 404:
            raise
        if "could not find the requested resource" in str(exc):
            hint = "is KServe installed? kubectl get crd inferenceservices.serving.kserve.io"
            raise K8sError(f"{exc} ({hint})", 404) from None
        api.request("POST", collection, isvc)
        return "created"
    patch = {"metadata": {"labels": meta["labels"], "annotations": meta["annotations"]}, "spec": isvc["spec"]}
    api.request("PATCH", f"{collection}/{meta['name']}", patch, content_type="application/merge-patch+json")
    return "updated"
