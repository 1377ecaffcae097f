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

from kubeclr.cluster.k8s import GPU_TOLERATION
from kubeclr.errors import UserError

# The operator reads MASTER_PORT from the container port with this name
# (kubeflowv1.PytorchJobDefaultPortName; default 23456).
PORT_NAME, DEFAULT_PORT = "pytorchjob-port", 23456


def job_name(run_name: str) -> str:
    """A valid DNS-1035 job name derived from ``run_name`` (≤ 40 chars: pod and service names add suffixes)."""
    slug = re.sub(r"[^a-z0-9-]+", "-", run_name.lower()).strip("-") or "run"
    digest = hashlib.sha256(run_name.encode()).hexdigest()[:6]
    return f"simclr-{slug[:26].rstrip('-')}-{digest}"


def build_pytorchjob(
    *,
    name: str,
    namespace: str,
    image: str,
    nodes: int,
    gpus_per_node: int,
    command_args: list[str],
    env: dict[str, str],
    secret_name: str | None,
    node_selector: dict[str, str],
    tolerations: list[dict],
    cpu: str,
    memory: str,
    shm_size: str,
    service_account: str | None,
    labels: dict,
    clean_pod_policy: str = "Running",
    backoff_limit: int = 2,
    active_deadline_s: int | None = None,
    metrics_port: int = 0,
    priority_class: str | None = None,
) -> dict:
    """Build a ``kubeflow.org/v1`` PyTorchJob running ``torchrun -m kubeclr.launch.entry``.

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
        name: job name (DNS-1035 label, ≤ 40 chars; see :func:`job_name`).
        nodes: pods (1 Master + ``nodes - 1`` Workers), ≥ 1.
        gpus_per_node: ``nvidia.com/gpu`` per pod and torchrun processes per pod
            (0 = CPU-only pods with one process each).
        command_args: arguments of ``python -m kubeclr.launch.entry``.
        env: extra container environment (e.g. ``AWS_ENDPOINT_URL``).
        secret_name: Secret exposed as env via ``envFrom`` (S3 credentials), or None.
        node_selector, tolerations: pod placement (the GPU taint toleration is added when GPUs are requested).
        cpu, memory: requests = limits per pod; shm_size: ``/dev/shm`` size (memory-backed emptyDir).
        service_account: pod service account, or None for the namespace default.
        labels: added to the job and to every pod (the PodMonitor selects on them).
        clean_pod_policy: ``runPolicy.cleanPodPolicy`` (All | Running | None).
        backoff_limit: pod restarts before the job is marked Failed.
        active_deadline_s: server-side deadline for the whole job, or None.
        metrics_port: expose a ``metrics`` container port for the PodMonitor (0 = none).

    Returns:
        The PyTorchJob as a JSON-ready dict.

    Raises:
        UserError: invalid name, node or GPU count.
    """
    if not re.fullmatch(r"[a-z]([-a-z0-9]{0,38}[a-z0-9])?", name):
        raise UserError(f"job name {name!r} is not a DNS-1035 label of at most 40 characters")
    if nodes < 1 or gpus_per_node < 0:
        raise UserError(f"nodes={nodes}, gpus_per_node={gpus_per_node}: need nodes >= 1 and gpus_per_node >= 0")
    nproc = max(gpus_per_node, 1)
    command = [
        "torchrun",
        f"--nnodes={nodes}",
        f"--nproc_per_node={nproc}",
        "--rdzv_backend=c10d",
        "--rdzv_endpoint=$(MASTER_ADDR):$(MASTER_PORT)",
        f"--rdzv_id={name}",
        # '$$' keeps a literal '$(' in user values from being expanded by Kubernetes
        "-m",
        "kubeclr.launch.entry",
        *(a.replace("$(", "$$(") for a in command_args),
    ]
    limits = {"cpu": cpu, "memory": memory}
    tolerations = list(tolerations)
    if gpus_per_node:
        limits["nvidia.com/gpu"] = str(gpus_per_node)
        if not any(t.get("key") == "nvidia.com/gpu" for t in tolerations):
            tolerations.append(dict(GPU_TOLERATION))
    ports = [{"name": PORT_NAME, "containerPort": DEFAULT_PORT, "protocol": "TCP"}]
    if metrics_port:
        ports.append({"name": "metrics", "containerPort": metrics_port, "protocol": "TCP"})
    container: dict[str, Any] = {
        "name": "pytorch",  # the operator finds its container by this exact name
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": command,
        "env": [{"name": k, "value": str(v)} for k, v in sorted(env.items())],
        "ports": ports,
        "resources": {"requests": dict(limits), "limits": limits},
        "volumeMounts": [{"name": "dshm", "mountPath": "/dev/shm"}],
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
    }
    if secret_name:
        container["envFrom"] = [{"secretRef": {"name": secret_name}}]
    # the component label is fixed: the PodMonitor and the peers NetworkPolicy (manifests/base) select it
    pod_labels = {
        "app.kubernetes.io/name": "kubeclr",
        **labels,
        "app.kubernetes.io/component": "simclr-pretrain",
        "kubeclr.io/job": name,
    }
    pod_spec: dict[str, Any] = {
        "containers": [container],
        # DataLoader/NCCL need far more than the 64 MiB default /dev/shm (kubeflow/pipelines#9893).
        "volumes": [{"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": shm_size}}],
        "nodeSelector": dict(node_selector),
        "tolerations": tolerations,
        "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
    }
    if service_account:
        pod_spec["serviceAccountName"] = service_account
    if priority_class:  # e.g. kubeclr-gpu-training from manifests/base: GPU training preempts lower work
        pod_spec["priorityClassName"] = priority_class
    template = {
        "metadata": {
            "labels": pod_labels,
            # an Istio sidecar blocks the rendezvous port until it is ready
            "annotations": {"sidecar.istio.io/inject": "false"},
        },
        "spec": pod_spec,
    }

    def replica(count: int) -> dict:
        return {"replicas": count, "restartPolicy": "OnFailure", "template": json.loads(json.dumps(template))}

    replicas = {"Master": replica(1)}
    if nodes > 1:
        replicas["Worker"] = replica(nodes - 1)
    run_policy: dict[str, Any] = {"cleanPodPolicy": clean_pod_policy, "backoffLimit": backoff_limit}
    if active_deadline_s:
        run_policy["activeDeadlineSeconds"] = int(active_deadline_s)
    return {
        "apiVersion": "kubeflow.org/v1",
        "kind": "PyTorchJob",
        "metadata": {"name": name, "namespace": namespace, "labels": {**pod_labels}},
        "spec": {"nprocPerNode": str(nproc), "runPolicy": run_policy, "pytorchReplicaSpecs": replicas},
    }
