"""kubeclr: SimCLR on CIFAR-10 as a Kubeflow Pipelines pipeline.

The importable library, by concern (docs/architecture.md). The ML core
(``core``, ``data``, ``eval``) imports no kfp, boto3, kubernetes or
prometheus_client and never hard-codes a device; storage and metrics reach it
through small interfaces.
"""

__version__ = "0.1.0"

# The one image every component runs on. The tag is the package version, so the
# compiled pipeline, the image label and the wheel always agree; `compile
# --image` overrides it for a private registry.
IMAGE_REPOSITORY = "ghcr.io/kubeclr/kubeclr"
IMAGE = f"{IMAGE_REPOSITORY}:{__version__}"
