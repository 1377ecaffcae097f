"""Kubeflow Trainer v2's ``TrainJob`` (``trainer.kubeflow.org/v1alpha1``) as a JSON-ready object.

Written against the Trainer v2.3 API (``pkg/apis/trainer/v1alpha1/trainjob_types.go``,
tag v2.3.0). The job references a runtime (``runtimeRef``; by default the
``torch-distributed`` ClusterTrainingRuntime, one replicated job ``node`` with a
container ``node``); ``trainer`` sets our image, the command, the node count and
each node's resources. The torch plugin injects ``PET_NNODES``,
``PET_NPROC_PER_NODE``, ``PET_NODE_RANK``, ``PET_MASTER_ADDR`` and
``PET_MASTER_PORT`` (29500), which plain ``torchrun`` reads, so the command is
``torchrun -m kubeclr.launch.entry …``. Everything else a pod needs goes through
``runtimePatches`` (v2.2+), whose pod patch allows only labels and annotations,
``nodeSelector``, ``tolerations``, ``volumes``, ``serviceAccountName``,
``securityContext`` and, per container, ``volumeMounts`` and ``securityContext``.

Two things a TrainJob cannot say, unlike a PyTorchJob: ``envFrom`` (the S3
Secret's keys are mapped one by one with ``secretKeyRef`` in ``trainer.env``)
and ``priorityClassName`` (set it in a TrainingRuntime of your own and name it in
``cluster.runtime_name``). The job's own labels are not copied to its pods; the
pods get theirs through the patch.
"""

from __future__ import annotations

from typing import Any

from kubeclr.cluster.k8s import S3_SECRET_KEYS
from kubeclr.cluster.pods import CONTAINER_SECURITY, POD_ANNOTATIONS, POD_SECURITY, SHM_MOUNT, JobPods, shm_volume
from kubeclr.errors import UserError

API_VERSION = "trainer.kubeflow.org/v1alpha1"
NODE = "node"  # the torch-distributed runtime's replicated job and its container
PATCH_MANAGER = "kubeclr.io/launcher"  # runtimePatches are keyed by a domain-prefixed manager
TORCH_ENV = ("PET_NNODES", "PET_NPROC_PER_NODE", "PET_NODE_RANK", "PET_MASTER_ADDR", "PET_MASTER_PORT")


def build_trainjob(
    pods: JobPods,
    *,
    runtime_name: str = "torch-distributed",
    runtime_kind: str = "ClusterTrainingRuntime",
    secret_keys: tuple[str, ...] = S3_SECRET_KEYS,
) -> dict:
    """A TrainJob running ``torchrun -m kubeclr.launch.entry`` on ``pods.nodes`` nodes.

    Args:
        pods: what the job's pods run and need.
        runtime_name, runtime_kind: the runtime the job references (``runtimeRef``).
        secret_keys: the keys of ``pods.secret_name`` mapped to env variables of the same name
            (optional: a key the Secret lacks is simply unset).

    Returns:
        The TrainJob as a JSON-ready dict.

    Raises:
        UserError: a priority class was asked for (a TrainJob cannot set one), or extra env
            would shadow the torch plugin's ``PET_*`` variables.
    """
    if pods.priority_class:
        raise UserError(
            f"priority class {pods.priority_class!r}: a TrainJob cannot set priorityClassName (Trainer v2.3's "
            "runtimePatches have no such field); set it in a TrainingRuntime of your own and name it with "
            "cluster.runtime_name, or use cluster.engine=pytorchjob"
        )
    shadowed = sorted(set(pods.env) & set(TORCH_ENV))
    if shadowed:
        raise UserError(f"env {shadowed[0]} is set by Trainer's torch plugin; it cannot be overridden")
    env: list[dict[str, Any]] = [{"name": k, "value": str(v)} for k, v in sorted(pods.env.items())]
    if pods.secret_name:
        env += [
            {"name": key, "valueFrom": {"secretKeyRef": {"name": pods.secret_name, "key": key, "optional": True}}}
            for key in secret_keys
            if key not in pods.env
        ]
    pod_spec: dict[str, Any] = {
        "volumes": [shm_volume(pods.shm_size)],
        "tolerations": pods.all_tolerations(),
        "securityContext": POD_SECURITY,
        "containers": [{"name": NODE, "volumeMounts": [dict(SHM_MOUNT)], "securityContext": CONTAINER_SECURITY}],
    }
    if pods.node_selector:
        pod_spec["nodeSelector"] = dict(pods.node_selector)
    if pods.service_account:
        pod_spec["serviceAccountName"] = pods.service_account
    pod = {"metadata": {"labels": pods.pod_labels(), "annotations": dict(POD_ANNOTATIONS)}, "spec": pod_spec}
    patch = {
        "manager": PATCH_MANAGER,
        "trainingRuntimeSpec": {
            "template": {"spec": {"replicatedJobs": [{"name": NODE, "template": {"spec": {"template": pod}}}]}}
        },
    }
    spec: dict[str, Any] = {
        "runtimeRef": {"name": runtime_name, "apiGroup": API_VERSION.split("/")[0], "kind": runtime_kind},
        "trainer": {
            "image": pods.image,
            "command": ["torchrun"],
            "args": ["-m", "kubeclr.launch.entry", *pods.escaped_args()],
            "env": env,
            "numNodes": pods.nodes,
            "numProcPerNode": pods.nproc,
            "resourcesPerNode": pods.resources(),
        },
        "runtimePatches": [patch],
    }
    if pods.active_deadline_s:
        spec["activeDeadlineSeconds"] = int(pods.active_deadline_s)
    return {
        "apiVersion": API_VERSION,
        "kind": "TrainJob",
        "metadata": {"name": pods.name, "namespace": pods.namespace, "labels": pods.job_labels()},
        "spec": spec,
    }
