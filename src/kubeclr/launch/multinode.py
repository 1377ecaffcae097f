"""The multi-node engine: a ``TrainJob`` (Kubeflow Trainer v2) or a ``PyTorchJob`` (Training Operator v1).

When one GPU node is not enough, the ``pretrain`` step becomes a launcher: it
uploads its inputs to object storage, creates the job (``cluster.engine``;
each of its ``nodes`` pods runs ``torchrun`` on :mod:`kubeclr.launch.entry`
with the resolved config inline), waits for it while logging status
transitions, and turns what rank 0 wrote to object storage into the step's KFP
outputs, so the rest of the pipeline does not know which engine ran.

The Kubernetes API is reached through :class:`kubeclr.cluster.k8s.K8sApi` (plain
REST); the create/wait/delete lifecycle is :mod:`kubeclr.cluster.jobs`; the
objects are :mod:`kubeclr.cluster.trainjob` and :mod:`kubeclr.cluster.pytorchjob`.
"""

from __future__ import annotations

import logging
from pathlib import Path

from kubeclr.atomic import read_json
from kubeclr.cluster.jobs import launch_and_wait
from kubeclr.cluster.k8s import K8sApi, own_namespace
from kubeclr.cluster.pods import JobPods
from kubeclr.cluster.pytorchjob import build_pytorchjob, job_name
from kubeclr.cluster.trainjob import build_trainjob
from kubeclr.config import Config
from kubeclr.errors import StorageError, UserError
from kubeclr.launch.entry import entry_args
from kubeclr.launch.process import TrainFiles
from kubeclr.launch.settings import LaunchSettings
from kubeclr.storage.store import open_store

log = logging.getLogger(__name__)

OUTPUTS = ("encoder.pt", "history.json", "summary.json")


def job_object(
    cfg: Config,
    *,
    checkpoints: str,
    nodes: int,
    gpus_per_node: int,
    settings: LaunchSettings,
    run_name: str,
    name: str | None = None,
    namespace: str | None = None,
) -> dict:
    """The job the launcher creates for ``cfg`` (``cluster.engine``), exactly as it is sent.

    Args:
        cfg: the run's config (inline in every pod's command, with its digest).
        checkpoints: the run's checkpoint prefix; inputs and outputs go to
            ``<checkpoints>/multinode/<job>/``, checkpoints to ``<checkpoints>/checkpoints``.
        nodes, gpus_per_node: the job's size.
        settings: image, Secret, placement, pod size, queue of the job's pods.
        run_name: labels the pods' metrics.
        name: the job's name (default: derived from ``checkpoints``, so a retried step
            finds the same name and a new run gets a new one).
        namespace: where (default: ``settings.namespace``, else this pod's own).
    """
    name, prefix, job_checkpoints = layout(checkpoints, name)
    s = settings
    pods = JobPods(
        name=name,
        namespace=namespace or s.namespace or own_namespace(),
        image=s.image,
        nodes=nodes,
        gpus_per_node=gpus_per_node,
        command_args=entry_args(
            cfg,
            train=f"{prefix}/inputs/train.npz",
            stats=f"{prefix}/inputs/stats.json",
            run_name=run_name,
            output_uri=prefix,
            checkpoint_uri=job_checkpoints,
        ),
        env=s.env,
        secret_name=s.secret_name or None,
        node_selector=s.node_selector,
        tolerations=s.tolerations(),
        cpu=s.cpu,
        memory=s.memory,
        shm_size=s.shm_size,
        service_account=s.service_account or None,
        labels={"kubeclr.io/run": name, **s.labels},
        queue_name=s.queue_name,
        active_deadline_s=int(s.timeout_s),
        metrics_port=cfg.metrics.port,
        priority_class=s.priority_class or None,
    )
    if cfg.cluster.engine == "pytorchjob":
        return build_pytorchjob(pods)
    return build_trainjob(pods, runtime_name=cfg.cluster.runtime_name, runtime_kind=cfg.cluster.runtime_kind)


def layout(checkpoints: str, name: str | None = None) -> tuple[str, str, str]:
    """``(job name, inputs/outputs prefix, checkpoint prefix)`` of a run whose checkpoints go to ``checkpoints``."""
    uri = checkpoints.rstrip("/")
    name = name or job_name(uri)
    return name, f"{uri}/multinode/{name}", f"{uri}/checkpoints"


class MultiNode:
    """Pretrain on ``nodes`` pods of ``gpus_per_node`` GPUs each through a TrainJob or a PyTorchJob.

    Args:
        nodes: pods taking part (>= 1).
        gpus_per_node: GPUs (= torchrun processes) per pod; 0 = CPU pods, one process each.
        settings: image, Secret, placement and pod size of the job's pods.
        api: the Kubernetes API (default: in-cluster, with the pod's service account).
        name: the job's name (default: see :func:`job_object`).
    """

    name = "multi-node job"

    def __init__(
        self,
        nodes: int,
        gpus_per_node: int,
        settings: LaunchSettings,
        *,
        api: K8sApi | None = None,
        name: str | None = None,
    ) -> None:
        self.nodes, self.gpus_per_node, self.settings = nodes, gpus_per_node, settings
        self.api, self.job_name = api, name

    def train(self, cfg: Config, files: TrainFiles, *, run_name: str) -> dict:
        """Upload inputs, run the job, fetch rank 0's outputs; returns the pretrain summary.

        Raises:
            K8sError, JobFailed, JobTimeout: see :func:`kubeclr.cluster.jobs.launch_and_wait`.
            StorageError: inputs cannot be uploaded, or the job succeeded without writing its outputs.
        """
        job = job_object(
            cfg,
            checkpoints=files.checkpoints,
            nodes=self.nodes,
            gpus_per_node=self.gpus_per_node,
            settings=self.settings,
            run_name=run_name,
            name=self.job_name,
        )
        _, prefix, _ = layout(files.checkpoints, self.job_name)
        store = open_store(prefix)
        for key in OUTPUTS:  # never pick up a previous attempt's outputs
            store.delete(key)
        store.put_file(Path(files.train), "inputs/train.npz")
        store.put_file(Path(files.stats), "inputs/stats.json")
        s = self.settings
        launch_and_wait(
            job,
            api=self.api or K8sApi.in_cluster(),
            timeout_s=wait_limit(s.timeout_s),
            poll_s=s.poll_s,
            delete_after=s.delete_after,
            log=log,
        )
        name = job["metadata"]["name"]
        try:
            store.get_file("encoder.pt", Path(files.encoder_out))
            store.get_file("history.json", Path(files.history_out))
        except StorageError as exc:
            raise StorageError(f"{job['kind']} {name} succeeded but rank 0's outputs are missing: {exc}") from None
        summary = read_json(files.history_out).get("summary")
        if not isinstance(summary, dict):
            raise StorageError(f"{prefix}/history.json: no 'summary' block")
        return summary


def wait_limit(timeout_s: float) -> float:
    """How long the launcher waits: the step's timeout less a margin (2%, at most 5 minutes).

    The KFP task, the job's ``activeDeadlineSeconds`` and the launcher all use one
    timeout, time queued by Kueue included; the launcher gives up first, so the
    step fails with the job's last state and deletes the job itself.
    """
    return max(timeout_s * 0.5, timeout_s - min(300.0, 0.02 * timeout_s))


def check_request(nodes: int, checkpoints: str) -> None:
    """Refuse a multi-node request the pods could not serve.

    Raises:
        UserError: fewer than 2 nodes, or checkpoints not on object storage the pods can reach.
    """
    if nodes < 2:
        raise UserError(f"nodes={nodes}: a multi-node job needs 2 or more (one node trains in the step's own pod)")
    if not checkpoints.startswith("s3://"):
        raise UserError(
            f"nodes={nodes} needs checkpoint_uri to be an s3:// prefix the job's pods can reach (got {checkpoints!r})"
        )
