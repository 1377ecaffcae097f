"""Multi-node pretraining on the Kubeflow Training Operator (``PyTorchJob``).

When one GPU node is not enough, the ``pretrain`` step becomes a launcher: it
uploads its inputs to object storage, creates a ``kubeflow.org/v1`` PyTorchJob
(one Master + ``nodes - 1`` Workers, each running ``torchrun`` with a c10d
rendezvous), waits for it while logging status transitions, and turns what
rank 0 wrote to object storage into the step's KFP outputs.

The Kubernetes API is reached through :class:`kubeclr.k8s.K8sApi` (plain REST);
the create/wait/delete lifecycle is :mod:`kubeclr.k8s_jobs`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from kubeclr.config import Config
from kubeclr.errors import StorageError, UserError
from kubeclr.io import read_json
from kubeclr.k8s import SA_DIR, K8sApi
from kubeclr.k8s_jobs import (  # noqa: F401  (re-exported: the job lifecycle lives there)
    JobFailed, JobTimeout, launch_and_wait, resource_path)
from kubeclr.storage import open_store

logger = logging.getLogger(__name__)

# The operator reads MASTER_PORT from the container port with this name
# (kubeflowv1.PytorchJobDefaultPortName; default 23456).
PORT_NAME, DEFAULT_PORT = "pytorchjob-port", 23456
GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}


def job_name(run_name: str) -> str:
    """A valid DNS-1035 job name derived from ``run_name`` (≤ 40 chars: pod and service names add suffixes)."""
    slug = re.sub(r"[^a-z0-9-]+", "-", run_name.lower()).strip("-") or "run"
    digest = hashlib.sha256(run_name.encode()).hexdigest()[:6]
    return f"simclr-{slug[:26].rstrip('-')}-{digest}"


def build_pytorchjob(*, name: str, namespace: str, image: str, nodes: int, gpus_per_node: int,
                     command_args: list[str], env: dict[str, str], secret_name: str | None,
                     node_selector: dict[str, str], tolerations: list[dict], cpu: str, memory: str,
                     shm_size: str, service_account: str | None, labels: dict,
                     clean_pod_policy: str = "Running", backoff_limit: int = 2,
                     active_deadline_s: int | None = None, metrics_port: int = 0,
                     priority_class: str | None = None) -> dict:
    """Build a ``kubeflow.org/v1`` PyTorchJob running ``torchrun -m kubeclr.train_entry``.

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
        command_args: arguments of ``python -m kubeclr.train_entry``.
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
    command = ["torchrun", f"--nnodes={nodes}", f"--nproc_per_node={nproc}", "--rdzv_backend=c10d",
               "--rdzv_endpoint=$(MASTER_ADDR):$(MASTER_PORT)", f"--rdzv_id={name}",
               # '$$' keeps a literal '$(' in user values from being expanded by Kubernetes
               "-m", "kubeclr.train_entry", *(a.replace("$(", "$$(") for a in command_args)]
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
    pod_labels = {"app.kubernetes.io/name": "kubeclr", **labels, "app.kubernetes.io/component": "simclr-pretrain",
                  "kubeclr.io/job": name}
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
    template = {"metadata": {"labels": pod_labels,
                             # an Istio sidecar blocks the rendezvous port until it is ready
                             "annotations": {"sidecar.istio.io/inject": "false"}},
                "spec": pod_spec}

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


@dataclass(frozen=True)
class ClusterSettings:
    """Where and how the multi-node job runs (pipeline parameters, not training config)."""

    image: str
    namespace: str = ""  # '' = the launcher pod's own namespace
    nodes: int = 2
    gpus_per_node: int = 1
    secret_name: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: list[dict] = field(default_factory=list)
    cpu: str = "8"
    memory: str = "32Gi"
    shm_size: str = "8Gi"
    service_account: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    priority_class: str | None = None
    timeout_s: float = 24 * 3600
    poll_s: float = 10
    delete_after: bool = True

    @classmethod
    def from_env(cls, *, nodes: int, gpus_per_node: int, environ: Mapping[str, str] = os.environ) -> "ClusterSettings":
        """Settings the pipeline fixed at compile time, read from the launcher pod's env.

        ``simclr-pipeline compile`` sets ``KUBECLR_IMAGE``, ``KUBECLR_SECRET_NAME``,
        ``KUBECLR_NODE_SELECTOR`` (JSON), ``KUBECLR_GPU_TOLERATION``, ``KUBECLR_POD_CPU``,
        ``KUBECLR_POD_MEMORY``, ``KUBECLR_SHM_SIZE``, ``KUBECLR_TIMEOUT_S`` and ``KUBECLR_DELETE_JOB``
        on the pretrain task.
        """
        from kubeclr import IMAGE

        tolerate = environ.get("KUBECLR_GPU_TOLERATION", "true") == "true"
        return cls(image=environ.get("KUBECLR_IMAGE", IMAGE), nodes=nodes, gpus_per_node=gpus_per_node,
                   secret_name=environ.get("KUBECLR_SECRET_NAME") or None,
                   node_selector=json.loads(environ.get("KUBECLR_NODE_SELECTOR", "{}")),
                   tolerations=[dict(GPU_TOLERATION)] if tolerate else [],
                   cpu=environ.get("KUBECLR_POD_CPU", "8"), memory=environ.get("KUBECLR_POD_MEMORY", "32Gi"),
                   shm_size=environ.get("KUBECLR_SHM_SIZE", "8Gi"),
                   service_account=environ.get("KUBECLR_SERVICE_ACCOUNT") or None,
                   priority_class=environ.get("KUBECLR_PRIORITY_CLASS") or None,
                   timeout_s=float(environ.get("KUBECLR_TIMEOUT_S", 24 * 3600)),
                   delete_after=environ.get("KUBECLR_DELETE_JOB", "true") == "true")


def config_overrides(cfg: Config) -> list[str]:
    """``--set section.key=value`` arguments that rebuild ``cfg`` exactly from any preset.

    The pods share no filesystem with the launcher, so the config travels in the
    job's command line, where ``kubectl get pytorchjob -o yaml`` also shows it.
    """
    args = []
    for section, values in cfg.to_dict().items():
        for key, value in values.items():
            text = value if isinstance(value, str) else json.dumps(value)  # lists, bools, numbers (repr-exact)
            args += ["--set", f"{section}.{key}={text}"]
    return args


def train_entry_args(cfg: Config, *, prefix: str, run_name: str, checkpoint_uri: str) -> list[str]:
    """Arguments of ``python -m kubeclr.train_entry`` in the job: config, inputs and outputs by URI."""
    return [*config_overrides(cfg), "--train", f"{prefix}/inputs/train.npz",
            "--stats", f"{prefix}/inputs/stats.json", "--output-uri", prefix,
            "--checkpoint-uri", checkpoint_uri, "--run-name", run_name]


def run_multinode(cfg: Config, train_path: str | Path, stats_path: str | Path, encoder_out: str | Path,
                  history_out: str | Path, *, run_name: str, output_uri: str, cluster: ClusterSettings,
                  checkpoint_uri: str = "", api: K8sApi | None = None, name: str | None = None) -> dict:
    """Pretrain on ``cluster.nodes`` pods through a PyTorchJob; fetch rank 0's outputs.

    Inputs go to ``<output_uri>/<job>/inputs/``, the config into the command
    line (:func:`config_overrides`); rank 0 writes ``encoder.pt``,
    ``history.json`` (contract format) and ``summary.json`` under
    ``<output_uri>/<job>/``. Checkpoints default to ``<output_uri>/<job>/checkpoints``
    so a restarted pod (restartPolicy OnFailure) resumes instead of starting over.

    Returns:
        The pretrain summary block (metrics.json ``pretrain``).

    Raises:
        K8sError, JobFailed, JobTimeout: see :func:`launch_and_wait`.
        StorageError: inputs cannot be uploaded, or the job succeeded without writing its outputs.
    """
    name = name or job_name(run_name)
    prefix = f"{output_uri.rstrip('/')}/{name}"
    store = open_store(prefix)
    for key in ("encoder.pt", "history.json", "summary.json"):  # never pick up a previous attempt's outputs
        store.delete(key)
    store.put_file(Path(train_path), "inputs/train.npz")
    store.put_file(Path(stats_path), "inputs/stats.json")
    api = api or K8sApi.in_cluster()
    namespace = cluster.namespace or _own_namespace()
    job = build_pytorchjob(
        name=name, namespace=namespace, image=cluster.image, nodes=cluster.nodes,
        gpus_per_node=cluster.gpus_per_node,
        command_args=train_entry_args(cfg, prefix=prefix, run_name=run_name,
                                      checkpoint_uri=checkpoint_uri or f"{prefix}/checkpoints"),
        env=cluster.env, secret_name=cluster.secret_name, node_selector=cluster.node_selector,
        tolerations=cluster.tolerations, cpu=cluster.cpu, memory=cluster.memory, shm_size=cluster.shm_size,
        service_account=cluster.service_account, labels={"kubeclr.io/run": name, **cluster.labels},
        active_deadline_s=int(cluster.timeout_s), metrics_port=cfg.metrics.port,
        priority_class=cluster.priority_class)
    launch_and_wait(job, api=api, timeout_s=cluster.timeout_s, poll_s=cluster.poll_s,
                    delete_after=cluster.delete_after, log=logger)
    try:
        store.get_file("encoder.pt", Path(encoder_out))
        store.get_file("history.json", Path(history_out))
    except StorageError as exc:
        raise StorageError(f"{job['kind']} {name} succeeded but rank 0's outputs are missing: {exc}") from None
    summary = read_json(history_out).get("summary")
    if not isinstance(summary, dict):
        raise StorageError(f"{prefix}/history.json: no 'summary' block")
    return summary


def _own_namespace(sa_dir: Path = SA_DIR) -> str:
    try:
        return (sa_dir / "namespace").read_text().strip()
    except OSError:
        return "default"
