"""The Kubeflow Training Operator's ``PyTorchJob`` (``kubeflow.org/v1``) as a JSON-ready object.

One Master + ``nodes - 1`` Workers, each running ``torchrun`` with a c10d
rendezvous on :mod:`kubeclr.launch.entry`. The engine that creates, follows and
cleans up the job is :mod:`kubeclr.launch.multinode`.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from kubeclr.cluster.pods import (
    CONTAINER_SECURITY,
    POD_ANNOTATIONS,
    POD_SECURITY,
    SHM_MOUNT,
    JobPods,
    shm_volume,
    torchrun_flags,
)

# The operator reads MASTER_PORT from the container port with this name
# (kubeflowv1.PytorchJobDefaultPortName; default 23456).
PORT_NAME, DEFAULT_PORT = "pytorchjob-port", 23456


def job_name(run_name: str) -> str:
    """A valid DNS-1035 job name derived from ``run_name`` (≤ 40 chars: pod and service names add suffixes)."""
    slug = re.sub(r"[^a-z0-9-]+", "-", run_name.lower()).strip("-") or "run"
    digest = hashlib.sha256(run_name.encode()).hexdigest()[:6]
    return f"simclr-{slug[:26].rstrip('-')}-{digest}"


def build_pytorchjob(pods: JobPods, *, clean_pod_policy: str = "Running", backoff_limit: int = 2) -> dict:
    """A ``kubeflow.org/v1`` PyTorchJob running ``torchrun -m kubeclr.launch.entry`` on every pod.

    Env contract (training-operator ``pkg/controller.v1/pytorch/envvar.go``, v1.7+):
    every pod gets ``MASTER_ADDR`` (the master's Service, ``<name>-master-0``),
    ``MASTER_PORT`` (the port named ``pytorchjob-port``), ``WORLD_SIZE``
    (replicas × nprocPerNode), ``RANK`` (Master 0, Worker i → i+1) and
    ``PET_NNODES``/``PET_NPROC_PER_NODE``/``PET_NODE_RANK``. We use the
    documented torchrun form (PyTorch elastic quickstart): explicit
    ``--nnodes/--nproc_per_node`` and a c10d rendezvous hosted by the master at
    ``$(MASTER_ADDR):$(MASTER_PORT)`` — Kubernetes expands ``$(VAR)`` in
    ``command`` from the container's env, which includes the operator's.
    c10d assigns global ranks itself, so rank 0 may live in any pod; that is why
    outputs go to object storage, never to a pod's disk.

    Args:
        pods: what the job's pods run and need (1 Master + ``nodes - 1`` Workers); the
            Secret is exposed with ``envFrom``.
        clean_pod_policy: ``runPolicy.cleanPodPolicy`` (All | Running | None).
        backoff_limit: pod restarts before the job is marked Failed.

    Returns:
        The PyTorchJob as a JSON-ready dict.
    """
    command = [
        "torchrun",
        *torchrun_flags(pods.nproc, nodes=pods.nodes, rendezvous=("$(MASTER_ADDR):$(MASTER_PORT)", pods.name)),
        "-m",
        "kubeclr.launch.entry",
        *pods.escaped_args(),
    ]
    ports = [{"name": PORT_NAME, "containerPort": DEFAULT_PORT, "protocol": "TCP"}]
    if pods.metrics_port:
        ports.append({"name": "metrics", "containerPort": pods.metrics_port, "protocol": "TCP"})
    container: dict[str, Any] = {
        "name": "pytorch",  # the operator finds its container by this exact name
        "image": pods.image,
        "imagePullPolicy": "IfNotPresent",
        "command": command,
        "env": [{"name": k, "value": str(v)} for k, v in sorted(pods.env.items())],
        "ports": ports,
        "resources": pods.resources(),
        "volumeMounts": [dict(SHM_MOUNT)],
        "securityContext": CONTAINER_SECURITY,
    }
    if pods.secret_name:
        container["envFrom"] = [{"secretRef": {"name": pods.secret_name}}]
    pod_spec: dict[str, Any] = {
        "containers": [container],
        "volumes": [shm_volume(pods.shm_size)],
        "nodeSelector": dict(pods.node_selector),
        "tolerations": pods.all_tolerations(),
        "securityContext": POD_SECURITY,
    }
    if pods.service_account:
        pod_spec["serviceAccountName"] = pods.service_account
    if pods.priority_class:  # e.g. kubeclr-gpu-training from manifests/base: GPU training preempts lower work
        pod_spec["priorityClassName"] = pods.priority_class
    template = {"metadata": {"labels": pods.pod_labels(), "annotations": dict(POD_ANNOTATIONS)}, "spec": pod_spec}

    def replica(count: int) -> dict:
        return {"replicas": count, "restartPolicy": "OnFailure", "template": json.loads(json.dumps(template))}

    replicas = {"Master": replica(1)}
    if pods.nodes > 1:
        replicas["Worker"] = replica(pods.nodes - 1)
    run_policy: dict[str, Any] = {"cleanPodPolicy": clean_pod_policy, "backoffLimit": backoff_limit}
    if pods.active_deadline_s:
        run_policy["activeDeadlineSeconds"] = int(pods.active_deadline_s)
    return {
        "apiVersion": "kubeflow.org/v1",
        "kind": "PyTorchJob",
        "metadata": {"name": pods.name, "namespace": pods.namespace, "labels": pods.job_labels()},
        "spec": {"nprocPerNode": str(pods.nproc), "runPolicy": run_policy, "pytorchReplicaSpecs": replicas},
    }
