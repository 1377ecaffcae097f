"""What a multi-node training job's pods need, whichever operator runs them.

:class:`JobPods` is the one description both job builders read
(:mod:`kubeclr.cluster.pytorchjob`, :mod:`kubeclr.cluster.trainjob`); the
helpers below are the pieces every training pod gets: labels the PodMonitor and
NetworkPolicy select, the restricted security contexts, the GPU taint
toleration, a memory-backed ``/dev/shm``, resource requests.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from kubeclr.cluster.k8s import GPU_RESOURCE, GPU_TOLERATION
from kubeclr.errors import UserError

QUEUE_LABEL = "kueue.x-k8s.io/queue-name"  # Kueue admits a job by the LocalQueue this label names
COMPONENT = ("app.kubernetes.io/component", "simclr-pretrain")  # the PodMonitor and the peers NetworkPolicy select it
SHM_VOLUME = "dshm"
POD_SECURITY = {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
CONTAINER_SECURITY = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
# an Istio sidecar that is not ready yet blocks the rendezvous port
POD_ANNOTATIONS = {"sidecar.istio.io/inject": "false"}


@dataclass(frozen=True)
class JobPods:
    """One training job: ``nodes`` pods of ``gpus_per_node`` GPUs, each running torchrun on our entry point.

    Attributes:
        name: job name (DNS-1035 label, ≤ 40 characters: pod and service names add suffixes).
        namespace: where the job is created.
        image: the image every pod runs.
        nodes: pods, ≥ 1.
        gpus_per_node: ``nvidia.com/gpu`` per pod and torchrun processes per pod (0 = CPU pods, one process each).
        command_args: arguments of ``python -m kubeclr.launch.entry``.
        env: extra container environment (e.g. ``AWS_ENDPOINT_URL``).
        secret_name: Secret with the S3 variables for every pod, or None.
        node_selector, tolerations: placement (the GPU taint toleration is added when GPUs are requested).
        cpu, memory: requests = limits per pod.
        shm_size: size of the memory-backed ``/dev/shm``.
        service_account: the pods' service account, or None for the namespace default.
        labels: extra labels of the job and of every pod.
        queue_name: Kueue LocalQueue of the job ('' = not queued by Kueue).
        active_deadline_s: server-side deadline of the whole job, or None.
        metrics_port: a ``metrics`` container port for the PodMonitor (0 = none).
        priority_class: ``priorityClassName`` of the pods, or None.
    """

    name: str
    namespace: str
    image: str
    nodes: int
    gpus_per_node: int
    command_args: list[str]
    env: dict[str, str] = field(default_factory=dict)
    secret_name: str | None = None
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: list[dict] = field(default_factory=list)
    cpu: str = "8"
    memory: str = "32Gi"
    shm_size: str = "8Gi"
    service_account: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    queue_name: str = ""
    active_deadline_s: int | None = None
    metrics_port: int = 0
    priority_class: str | None = None

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[a-z]([-a-z0-9]{0,38}[a-z0-9])?", self.name):
            raise UserError(f"job name {self.name!r} is not a DNS-1035 label of at most 40 characters")
        if self.nodes < 1 or self.gpus_per_node < 0:
            raise UserError(
                f"nodes={self.nodes}, gpus_per_node={self.gpus_per_node}: need nodes >= 1 and gpus_per_node >= 0"
            )

    @property
    def nproc(self) -> int:
        """torchrun processes per pod."""
        return max(self.gpus_per_node, 1)

    def pod_labels(self) -> dict[str, str]:
        return {
            "app.kubernetes.io/name": "kubeclr",
            **self.labels,
            COMPONENT[0]: COMPONENT[1],
            "kubeclr.io/job": self.name,
        }

    def job_labels(self) -> dict[str, str]:
        return {**self.pod_labels(), **({QUEUE_LABEL: self.queue_name} if self.queue_name else {})}

    def resources(self) -> dict[str, dict[str, str]]:
        """Requests = limits of one pod (GPUs only when asked)."""
        limits = {"cpu": self.cpu, "memory": self.memory}
        if self.gpus_per_node:
            limits[GPU_RESOURCE] = str(self.gpus_per_node)
        return {"requests": dict(limits), "limits": limits}

    def all_tolerations(self) -> list[dict]:
        tolerations = [dict(t) for t in self.tolerations]
        if self.gpus_per_node and not any(t.get("key") == GPU_RESOURCE for t in tolerations):
            tolerations.append(dict(GPU_TOLERATION))
        return tolerations

    def escaped_args(self) -> list[str]:
        """``command_args`` with every ``$`` doubled.

        Kubernetes expands ``$(VAR)`` in commands and turns ``$$`` into ``$``, so only a
        doubled ``$`` reaches the container as the one ``$`` the argument had.
        """
        return [a.replace("$", "$$") for a in self.command_args]


def torchrun_flags(nproc: int, *, nodes: int = 1, rendezvous: tuple[str, str] | None = None) -> list[str]:
    """torchrun's flags, spelled here only: ``nproc`` processes in one pod, or on each of ``nodes`` pods.

    Args:
        nproc: processes per pod (``--nproc_per_node``).
        nodes: pods (``--nnodes``); only with ``rendezvous``.
        rendezvous: ``(endpoint, run id)`` of the c10d rendezvous the pods meet at; without it
            the job is one pod (``--standalone``: a local rendezvous on a free port).
    """
    if rendezvous is None:
        return ["--standalone", f"--nproc_per_node={nproc}"]
    endpoint, run_id = rendezvous
    return [
        f"--nnodes={nodes}",
        f"--nproc_per_node={nproc}",
        "--rdzv_backend=c10d",
        f"--rdzv_endpoint={endpoint}",
        f"--rdzv_id={run_id}",
    ]


def shm_volume(size: str) -> dict[str, Any]:
    """DataLoader and NCCL need far more than the 64 MiB default ``/dev/shm`` (kubeflow/pipelines#9893)."""
    return {"name": SHM_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": size}}


SHM_MOUNT = {"name": SHM_VOLUME, "mountPath": "/dev/shm"}
