"""The multi-node engine: a Training Operator ``PyTorchJob`` of ``nodes`` pods, followed to the end.

When one GPU node is not enough, the ``pretrain`` step becomes a launcher: it
uploads its inputs to object storage, creates the job (one Master + ``nodes - 1``
Workers, each running ``torchrun`` on :mod:`kubeclr.launch.entry` with the
resolved config inline), waits for it while logging status transitions, and
turns what rank 0 wrote to object storage into the step's KFP outputs.

The Kubernetes API is reached through :class:`kubeclr.cluster.k8s.K8sApi` (plain
REST); the create/wait/delete lifecycle is :mod:`kubeclr.cluster.jobs`.
"""

from __future__ import annotations

import logging
from pathlib import Path

from kubeclr.atomic import read_json
from kubeclr.cluster.jobs import launch_and_wait
from kubeclr.cluster.k8s import SA_DIR, K8sApi
from kubeclr.cluster.pytorchjob import build_pytorchjob, job_name
from kubeclr.config import Config
from kubeclr.errors import StorageError
from kubeclr.launch.entry import entry_args
from kubeclr.launch.process import TrainFiles
from kubeclr.launch.settings import LaunchSettings
from kubeclr.storage.store import open_store

log = logging.getLogger(__name__)

OUTPUTS = ("encoder.pt", "history.json", "summary.json")


class MultiNode:
    """Pretrain on ``nodes`` pods of ``gpus_per_node`` GPUs each through a PyTorchJob.

    Args:
        nodes: pods taking part (>= 1).
        gpus_per_node: GPUs (= torchrun processes) per pod; 0 = CPU pods, one process each.
        settings: image, Secret, placement and pod size of the job's pods.
        api: the Kubernetes API (default: in-cluster, with the pod's service account).
        name: the job's name (default: derived from the run-scoped checkpoint URI, so a
            retried step finds the same job name and a new run gets a new one).
    """

    name = "pytorchjob"

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

        Inputs go to ``<checkpoints>/multinode/<job>/inputs/``; rank 0 writes
        ``encoder.pt``, ``history.json`` and ``summary.json`` beside them;
        checkpoints go to ``<checkpoints>/checkpoints``, so a restarted pod
        (restartPolicy OnFailure) resumes instead of starting over.

        Raises:
            K8sError, JobFailed, JobTimeout: see :func:`kubeclr.cluster.jobs.launch_and_wait`.
            StorageError: inputs cannot be uploaded, or the job succeeded without writing its outputs.
        """
        uri = files.checkpoints.rstrip("/")
        name = self.job_name or job_name(uri)
        prefix = f"{uri}/multinode/{name}"
        store = open_store(prefix)
        for key in OUTPUTS:  # never pick up a previous attempt's outputs
            store.delete(key)
        store.put_file(Path(files.train), "inputs/train.npz")
        store.put_file(Path(files.stats), "inputs/stats.json")
        s = self.settings
        job = build_pytorchjob(
            name=name,
            namespace=s.namespace or own_namespace(),
            image=s.image,
            nodes=self.nodes,
            gpus_per_node=self.gpus_per_node,
            command_args=entry_args(
                cfg,
                train=f"{prefix}/inputs/train.npz",
                stats=f"{prefix}/inputs/stats.json",
                run_name=run_name,
                output_uri=prefix,
                checkpoint_uri=f"{uri}/checkpoints",
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
            active_deadline_s=int(s.timeout_s),
            metrics_port=cfg.metrics.port,
            priority_class=s.priority_class or None,
        )
        launch_and_wait(
            job,
            api=self.api or K8sApi.in_cluster(),
            timeout_s=s.timeout_s,
            poll_s=s.poll_s,
            delete_after=s.delete_after,
            log=log,
        )
        try:
            store.get_file("encoder.pt", Path(files.encoder_out))
            store.get_file("history.json", Path(files.history_out))
        except StorageError as exc:
            raise StorageError(f"{job['kind']} {name} succeeded but rank 0's outputs are missing: {exc}") from None
        summary = read_json(files.history_out).get("summary")
        if not isinstance(summary, dict):
            raise StorageError(f"{prefix}/history.json: no 'summary' block")
        return summary


def own_namespace(sa_dir: Path = SA_DIR) -> str:
    """The namespace of this pod (its service account's), or ``default`` outside a cluster."""
    try:
        return (sa_dir / "namespace").read_text().strip()
    except OSError:
        return "default"
