"""The pipeline's task settings, and the train-and-evaluate chain that a run has once and a sweep once per trial.

:func:`train_and_evaluate` adds pretrain → extract_features → linear_eval for one config,
with the GPU, placement, queue, retry and storage settings of :class:`CompileOptions`;
:mod:`kubeclr.pipelines.simclr` wires it after the data steps.
"""

from typing import Any, NamedTuple

from kfp import dsl, kubernetes

from kubeclr.cluster.k8s import GPU_RESOURCE, S3_SECRET_KEYS
from kubeclr.cluster.pods import QUEUE_LABEL
from kubeclr.launch.settings import SERVICE_ACCOUNT_ENV, CompileOptions, LaunchSettings

PRETRAIN_POD_LABEL = ("app.kubernetes.io/component", "simclr-pretrain")


def gpu_settings(task: dsl.PipelineTask, launch: LaunchSettings) -> None:
    for toleration in launch.tolerations():
        kubernetes.add_toleration(task, **toleration)
    for key, value in launch.node_selector.items():
        kubernetes.add_node_selector(task, label_key=key, label_value=value)


def queue(task: dsl.PipelineTask, launch: LaunchSettings) -> None:
    """Kueue admits the pod by its LocalQueue label (GPU tasks only: the CPU steps need no quota)."""
    if launch.queue_name:
        kubernetes.add_pod_label(task, QUEUE_LABEL, launch.queue_name)


def requests(task: dsl.PipelineTask, opts: CompileOptions) -> None:
    task.set_cpu_request(opts.step_cpu).set_memory_request(opts.step_memory).set_memory_limit(opts.step_memory)


def small(task: dsl.PipelineTask, memory: str = "256Mi", limit: str = "1Gi") -> None:
    """A task that reads a few JSON files (the fingerprint, a trial's config; with more memory when
    it imports torch: the gate, the deploy and registry steps)."""
    task.set_cpu_request("100m").set_memory_request(memory).set_memory_limit(limit)


def s3_env(task: dsl.PipelineTask, launch: LaunchSettings) -> None:
    if launch.secret_name:
        # optional: clusters using IRSA / workload identity need no Secret at all
        kubernetes.use_secret_as_env(
            task, secret_name=launch.secret_name, secret_key_to_env={k: k for k in S3_SECRET_KEYS}, optional=True
        )


class Trained(NamedTuple):
    pretrain: dsl.PipelineTask
    features: dsl.PipelineTask
    linear_eval: dsl.PipelineTask


def train_and_evaluate(
    c: Any,
    opts: CompileOptions,
    *,
    configs: dict[str, Any],
    data: dict,
    gpus: Any,
    nodes: Any,
    checkpoint_scope: Any,
    run_name: Any,
    job_name: Any,
    cached_name: Any,
) -> Trained:
    """Add pretrain → extract_features → linear_eval for one config.

    Args:
        c: the components (:func:`kubeclr.components.build`).
        opts: the compile options.
        configs: each task's config slice by task name (channels: resolve_config's, or a trial's).
        data: ``train``, ``val``, ``test`` and ``stats`` artifacts.
        gpus, nodes: pretraining's GPUs per node and nodes.
        checkpoint_scope: the pretrain task's checkpoint sub-folder.
        run_name, job_name: the pretrain task's names (metrics labels).
        cached_name: the cached steps' run name (never the KFP run's own, which differs every run).
    """
    launch = opts.launch
    pre = c.pretrain(
        config=configs["pretrain"],
        train=data["train"],
        stats=data["stats"],
        gpus=gpus,
        nodes=nodes,
        checkpoint_scope=checkpoint_scope,
        run_name=run_name,
        job_name=job_name,
    )
    pre.set_caching_options(opts.cache_pretrain)
    if launch.launcher_only:  # the GPUs, /dev/shm and node placement go to the job's pods (settings below)
        pre.set_display_name("SimCLR pretraining (multi-node job launcher)")
        pre.set_cpu_request("500m").set_cpu_limit("1").set_memory_request("2Gi").set_memory_limit("4Gi")
        # the job's pods carry the queue label themselves
    else:
        pre.set_display_name("SimCLR pretraining (GPU)")
        pre.set_accelerator_type(GPU_RESOURCE).set_accelerator_limit(gpus)
        pre.set_cpu_request(launch.cpu).set_cpu_limit(launch.cpu)
        pre.set_memory_request(launch.memory).set_memory_limit(launch.memory)
        gpu_settings(pre, launch)
        queue(pre, launch)
        kubernetes.empty_dir_mount(
            pre, volume_name="dshm", mount_path="/dev/shm", medium="Memory", size_limit=launch.shm_size
        )
    # a retried pod resumes from the newest complete checkpoint under its scope
    if opts.pretrain_retries:
        pre.set_retry(
            num_retries=opts.pretrain_retries,
            backoff_duration="60s",
            backoff_factor=2.0,
            backoff_max_duration="600s",
        )
    kubernetes.set_timeout(pre, launch.timeout_s)
    # what the step needs to launch a job like itself when nodes > 1: one validated variable
    for name, value in launch.to_env().items():
        pre.set_env_variable(name, value)
    kubernetes.use_field_path_as_env(pre, SERVICE_ACCOUNT_ENV, "spec.serviceAccountName")
    kubernetes.add_pod_label(pre, *PRETRAIN_POD_LABEL)

    splits = {k: data[k] for k in ("stats", "train", "val", "test")}
    feats = c.extract_features(
        config=configs["extract_features"], encoder=pre.outputs["encoder"], run_name=cached_name, **splits
    )
    feats.set_display_name("Extract features").set_caching_options(True)
    if opts.extract_gpu:
        feats.set_accelerator_type(GPU_RESOURCE).set_accelerator_limit(1)
        gpu_settings(feats, launch)
        queue(feats, launch)

    lin = c.linear_eval(
        config=configs["linear_eval"],
        features=feats.outputs["features"],
        encoder=pre.outputs["encoder"],
        run_name=cached_name,
        **splits,
    )
    lin.set_display_name("Linear evaluation & kNN").set_caching_options(True)
    for task in (feats, lin):
        requests(task, opts)
    for task in (pre, feats, lin):
        s3_env(task, launch)
    return Trained(pre, feats, lin)
