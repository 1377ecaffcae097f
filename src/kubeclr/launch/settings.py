"""What is fixed at compile time: where and how the pods run (:class:`LaunchSettings`, serialised
once) and the compiled DAG's options (:class:`CompileOptions`).

``simclr-pipeline compile`` fixes these at compile time (image, Secret, node
placement, pod size, timeout, …). The pipeline hands them to the pretrain task
as one environment variable, :data:`ENV_VAR`, holding JSON; the step reads them
back with :meth:`LaunchSettings.from_env`, which checks every field and names
the first bad one. Its defaults are the only copy of the pod defaults.
"""

from __future__ import annotations

import dataclasses
import json
import os
import typing
from dataclasses import dataclass, field
from typing import Any, Mapping

from kubeclr import IMAGE
from kubeclr.cluster.k8s import GPU_TOLERATION
from kubeclr.errors import ConfigError, UserError

ENV_VAR = "KUBECLR_LAUNCH"
# The pod's own service account, from the downward API (spec.serviceAccountName): known only at run time.
SERVICE_ACCOUNT_ENV = "KUBECLR_SERVICE_ACCOUNT"


@dataclass(frozen=True)
class LaunchSettings:
    """Cluster settings of the pretraining pods (not training config; not run parameters).

    Attributes:
        image: the image every pod runs (pinned tag or digest).
        namespace: namespace of multi-node jobs ('' = the launcher pod's own).
        secret_name: Secret with the ``AWS_*`` S3 variables for every pod ('' = none, e.g. IRSA).
        node_selector: node labels the GPU pods must match.
        gpu_toleration: tolerate the ``nvidia.com/gpu:NoSchedule`` taint.
        cpu, memory: requests = limits of the pretrain pod and of each job pod.
        shm_size: size of the memory-backed ``/dev/shm`` (the 64 MiB default breaks DataLoader and NCCL).
        timeout_s: deadline of pretraining (the task's timeout and the job's ``activeDeadlineSeconds``).
        delete_after: delete a finished multi-node job (False keeps its pods for ``kubectl logs``).
        launcher_only: the pipeline was compiled with ``--launcher`` (pretrain only launches a job).
        priority_class: ``priorityClassName`` of the job's pods ('' = the cluster default).
        service_account: the job pods' service account ('' = the launcher pod's own, read at run time).
        poll_s: seconds between status reads of a job.
        env: extra environment of the job's pods.
        labels: extra labels of the job and its pods.
        queue_name: Kueue LocalQueue of the multi-node job and of the pipeline's GPU pods ('' = none).
    """

    image: str = IMAGE
    namespace: str = ""
    secret_name: str = "kubeclr-s3-credentials"
    node_selector: dict[str, str] = field(default_factory=dict)
    gpu_toleration: bool = True
    cpu: str = "8"
    memory: str = "32Gi"
    shm_size: str = "8Gi"
    timeout_s: int = 24 * 3600
    delete_after: bool = True
    launcher_only: bool = False
    priority_class: str = ""
    service_account: str = ""
    poll_s: float = 10.0
    env: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    queue_name: str = ""

    def tolerations(self) -> list[dict]:
        return [dict(GPU_TOLERATION)] if self.gpu_toleration else []

    def to_env(self) -> dict[str, str]:
        """The settings as the one environment variable the pretrain task receives."""
        return {ENV_VAR: json.dumps(dataclasses.asdict(self), sort_keys=True)}

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> LaunchSettings:
        """The settings the pipeline was compiled with (defaults when :data:`ENV_VAR` is unset, as locally).

        Raises:
            UserError: the variable is not a JSON object of known, well-typed fields.
        """
        raw: Any = {}
        if environ.get(ENV_VAR):
            try:
                raw = json.loads(environ[ENV_VAR])
            except ValueError as exc:
                raise UserError(f"{ENV_VAR}: not valid JSON ({exc})") from None
        if not isinstance(raw, dict):
            raise UserError(f"{ENV_VAR}: expected a JSON object, got {type(raw).__name__}")
        if environ.get(SERVICE_ACCOUNT_ENV) and not raw.get("service_account"):
            raw = {**raw, "service_account": environ[SERVICE_ACCOUNT_ENV]}
        return cls.from_dict(raw, origin=ENV_VAR)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], origin: str = "launch settings") -> LaunchSettings:
        """Checked construction: unknown fields and wrong types raise one line naming the field."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - set(fields))
        if unknown:
            raise UserError(f"{origin}: unknown field '{unknown[0]}' (allowed: {', '.join(fields)})")
        hints = typing.get_type_hints(cls)
        for name, value in raw.items():
            if not _fits(value, hints[name]):
                raise UserError(f"{origin}: field '{name}' must be {_type_name(hints[name])}, got {value!r}")
        values = {k: float(v) if hints[k] is float else v for k, v in raw.items()}
        settings = cls(**values)
        if settings.timeout_s <= 0 or settings.poll_s <= 0:
            raise UserError(f"{origin}: timeout_s and poll_s must be > 0 (got {settings.timeout_s}, {settings.poll_s})")
        return settings


def check_world(batch_size: int, nodes: int, gpus_per_node: int, where: str = "") -> None:
    """Refuse a global batch that does not split evenly over the processes of ``nodes`` × ``gpus_per_node``.

    Each process takes ``batch_size / world`` images of every step (README, "Global batch size and
    learning rate across nodes"); ``gpus_per_node`` 0 means CPU pods, one process each. The commands
    that fix the world check it before anything starts; the pretrain step checks it again at start,
    since nodes and gpus_per_node are run parameters that the UI can change. ``where`` says, in the
    message, where the world's numbers come from (e.g. "the pipeline's defaults").

    Raises:
        ConfigError: one line naming both numbers.
    """
    world = nodes * max(gpus_per_node, 1)
    if nodes < 1 or gpus_per_node < 0 or batch_size % world == 0:
        return  # a world that cannot exist is refused where the job is built
    per_node = f"{gpus_per_node} GPU{'s' if gpus_per_node != 1 else ''}" if gpus_per_node else "1 CPU process"
    source = f" ({where})" if where else ""
    raise ConfigError(
        f"pretrain.batch_size {batch_size} is not divisible by {nodes} node{'s' if nodes != 1 else ''} × "
        f"{per_node} = {world} processes{source}; choose a batch size that is a multiple of {world}, "
        "or another world size"
    )


def _fits(value: Any, hint: Any) -> bool:
    if typing.get_origin(hint) is dict:
        return isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


def _type_name(hint: Any) -> str:
    names = {str: "a string", int: "an integer", float: "a number", bool: "a boolean"}
    return "an object of strings" if typing.get_origin(hint) is dict else names.get(hint, str(hint))


@dataclass(frozen=True)
class CompileOptions:
    """What is fixed at compile time (not run parameters): the pods' settings and the DAG's options.

    Attributes:
        launch: image, Secret, placement and size of the pretraining pods (and of the
            other steps' image and Secret); the pretrain task receives it whole.
        pipeline_root: artifact root, e.g. ``s3://bucket/pipeline-root`` (None = the cluster's).
        pretrain_retries: retries of the pretrain task; each resumes from the newest checkpoint.
        cache_pretrain: let KFP cache the pretrain step.
        extract_gpu: run ``extract_features`` on a GPU (off: every step but pretrain fits a CPU-only node).
        step_cpu, step_memory: CPU request and memory request = limit of every step but pretrain
            (pretrain's are ``launch.cpu`` / ``launch.memory``), so a namespace whose ResourceQuota
            demands requests admits all six.
        checkpoints_per_run: checkpoints under ``<checkpoint_uri>/<KFP run ID>``: retries of a run
            resume, the next (scheduled) run starts fresh. Local runs use the URI itself, so
            re-running the command resumes.
        deploy: add the deploy_model step: a run that passes creates or patches its KServe
            InferenceService (``deploy.*``).
    """

    launch: LaunchSettings = field(default_factory=LaunchSettings)
    pipeline_root: str | None = None
    pretrain_retries: int = 2
    cache_pretrain: bool = False
    extract_gpu: bool = True
    checkpoints_per_run: bool = True
    deploy: bool = False
    step_cpu: str = "2"
    step_memory: str = "8Gi"
