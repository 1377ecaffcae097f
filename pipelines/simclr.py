"""The ``simclr-cifar10`` pipeline: wiring only.

Six steps, the DAG of DESIGN.md::

    download_split ─┬─> compute_stats ─┬─> pretrain ─> extract_features ─> linear_eval ─> report
                    └──────────────────┴───────────────────────────────────────────────────┘

Parameter defaults come from a preset (or config file) at compile time; the
parameters a researcher changes in the UI are top-level, the rest of each
config section travels as one ``*_config`` struct parameter.
"""

# no `from __future__ import annotations`: KFP reads the pipeline signature at runtime

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, NamedTuple

from kfp import dsl, kubernetes
from kfp.dsl import HTML, Dataset, Markdown, Model

from kubeclr import IMAGE
from kubeclr.components import build as build_components
from kubeclr.config import Config
from kubeclr.errors import UserError

PIPELINE_NAME = "simclr-cifar10"
GPU_RESOURCE = "nvidia.com/gpu"
PRETRAIN_POD_LABEL = ("app.kubernetes.io/component", "simclr-pretrain")
# Keys of the S3 credentials Secret (manifests/base/s3-credentials-secret.yaml),
# each exposed under the same name, as boto3 reads them.
S3_SECRET_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL", "AWS_DEFAULT_REGION")

# The pipeline's own outputs: what `run --local` copies to --output-dir.
Outputs = NamedTuple("Outputs", [("report", HTML), ("summary", Markdown), ("metrics_json", Dataset),
                                 ("encoder", Model)])


@dataclass(frozen=True)
class CompileOptions:
    """Cluster settings fixed at compile time (not run parameters)."""

    image: str = IMAGE
    pipeline_root: str | None = None
    secret_name: str = "kubeclr-s3-credentials"
    node_selector: dict[str, str] = field(default_factory=dict)
    gpu_toleration: bool = True
    pretrain_cpu: str = "8"
    pretrain_memory: str = "32Gi"
    shm_size: str = "8Gi"
    pretrain_retries: int = 2
    pretrain_timeout_s: int = 24 * 3600
    cache_pretrain: bool = False
    extract_gpu: bool = True
    delete_pytorchjob: bool = True  # nodes > 1: delete the finished job (False keeps its pods for kubectl logs)
    # The pretrain task only launches a PyTorchJob (nodes > 1): no GPU and a small pod for it.
    launcher: bool = False
    priority_class: str = ""  # nodes > 1: priorityClassName of the job's pods ('' = the cluster default)
    # Checkpoints under <checkpoint_uri>/<KFP run ID>: retries of a run resume, the next (scheduled)
    # run starts fresh. Local runs use checkpoint_uri itself, so re-running the command resumes.
    checkpoints_per_run: bool = True


def _gpu_settings(task: dsl.PipelineTask, opts: CompileOptions) -> None:
    if opts.gpu_toleration:
        kubernetes.add_toleration(task, key=GPU_RESOURCE, operator="Exists", effect="NoSchedule")
    for key, value in opts.node_selector.items():
        kubernetes.add_node_selector(task, label_key=key, label_value=value)


def _s3_env(task: dsl.PipelineTask, opts: CompileOptions) -> None:
    if opts.secret_name:
        # optional: clusters using IRSA / workload identity need no Secret at all
        kubernetes.use_secret_as_env(task, secret_name=opts.secret_name,
                                     secret_key_to_env={k: k for k in S3_SECRET_KEYS}, optional=True)


def build_pipeline(cfg: Config, opts: CompileOptions = CompileOptions()) -> Callable:
    """Return the pipeline function with defaults taken from ``cfg``."""
    c = build_components(opts.image)
    d = cfg.to_dict()

    @dsl.pipeline(name=PIPELINE_NAME, pipeline_root=opts.pipeline_root,
                  description="SimCLR self-supervised pretraining on CIFAR-10 with linear evaluation "
                              "and an HTML report (kubeclr).")
    def simclr_cifar10(
        run_name: str = "",
        cifar_source: str = cfg.data.source,
        cifar_md5: str = cfg.data.md5,
        arch: str = cfg.model.arch,
        epochs: int = cfg.pretrain.epochs,
        batch_size: int = cfg.pretrain.batch_size,
        lr: float = cfg.pretrain.lr,
        temperature: float = cfg.pretrain.temperature,
        gpus_per_node: int = 1,
        nodes: int = 2 if opts.launcher else 1,
        checkpoint_uri: str = cfg.storage.checkpoint_uri,
        mirror_uri: str = cfg.storage.mirror_uri,
        export_uri: str = cfg.storage.export_uri,
        data_config: dict = d["data"],
        model_config: dict = d["model"],
        augment_config: dict = d["augment"],
        pretrain_config: dict = d["pretrain"],
        eval_config: dict = d["eval"],
        metrics_config: dict = d["metrics"],
    ) -> Outputs:
        """SimCLR on CIFAR-10.

        Args:
            run_name: Name shown in the report, metrics and export paths ('' = this run's name).
            cifar_source: Dataset tarball: https://…, s3://bucket/key, a path, or 'sample' (synthetic, offline).
            cifar_md5: Expected MD5 of the tarball ('none' skips the check).
            arch: Encoder: resnet18, resnet34 or resnet50.
            epochs: Pretraining epochs.
            batch_size: Global batch size across all GPUs.
            lr: Base learning rate (x batch/256 when lr_scaling is linear).
            temperature: NT-Xent temperature.
            gpus_per_node: GPUs per node for pretraining (torchrun, one process per GPU).
            nodes: Nodes for pretraining; more than 1 launches a Training Operator PyTorchJob.
            checkpoint_uri: s3:// or file:// prefix for checkpoints; retries resume from the newest.
            mirror_uri: s3:// prefix caching the dataset tarball ('' = off).
            export_uri: Copy encoder, report and metrics.json here by run name ('' = off).
            data_config: The data config section (val_split, limits, seed).
            model_config: The model config section (width, stem, init, head).
            augment_config: The augment config section (crop scale, colour strength, blur).
            pretrain_config: The pretrain config section (optimizer, warm-up, precision, compile).
            eval_config: The eval config section (protocol, kNN k, t-SNE points).
            metrics_config: The metrics config section (Pushgateway URL, /metrics port).
        """
        job = dsl.PIPELINE_JOB_NAME_PLACEHOLDER
        common = dict(run_name=run_name, job_name=job, metrics_config=metrics_config)

        split = c.download_split(data_config=data_config, cifar_source=cifar_source, cifar_md5=cifar_md5,
                                 mirror_uri=mirror_uri, **common)
        split.set_display_name("Download & split CIFAR-10").set_caching_options(True)
        train, val, test = split.outputs["train"], split.outputs["val"], split.outputs["test"]

        stats = c.compute_stats(train=train, **common)
        stats.set_display_name("Normalisation statistics").set_caching_options(True)

        pre = c.pretrain(train=train, stats=stats.outputs["stats"], data_config=data_config,
                         model_config=model_config, augment_config=augment_config,
                         pretrain_config=pretrain_config, arch=arch,
                         epochs=epochs, batch_size=batch_size, lr=lr, temperature=temperature, gpus=gpus_per_node,
                         nodes=nodes, checkpoint_uri=checkpoint_uri,
                         checkpoint_scope=dsl.PIPELINE_JOB_ID_PLACEHOLDER if opts.checkpoints_per_run else "",
                         **common)
        pre.set_caching_options(opts.cache_pretrain)
        if opts.launcher:  # the GPUs, /dev/shm and node placement go to the job's pods (env below)
            pre.set_display_name("SimCLR pretraining (PyTorchJob launcher)")
            pre.set_cpu_request("500m").set_cpu_limit("1").set_memory_request("2Gi").set_memory_limit("4Gi")
        else:
            pre.set_display_name("SimCLR pretraining (GPU)")
            pre.set_accelerator_type(GPU_RESOURCE).set_accelerator_limit(gpus_per_node)
            pre.set_cpu_request(opts.pretrain_cpu).set_cpu_limit(opts.pretrain_cpu)
            pre.set_memory_request(opts.pretrain_memory).set_memory_limit(opts.pretrain_memory)
            _gpu_settings(pre, opts)
            kubernetes.empty_dir_mount(pre, volume_name="dshm", mount_path="/dev/shm", medium="Memory",
                                       size_limit=opts.shm_size)
        # a retried pod resumes from the newest complete checkpoint at checkpoint_uri
        if opts.pretrain_retries:
            pre.set_retry(num_retries=opts.pretrain_retries, backoff_duration="60s", backoff_factor=2.0,
                          backoff_max_duration="600s")
        kubernetes.set_timeout(pre, opts.pretrain_timeout_s)
        # what the step needs to launch a PyTorchJob like itself when nodes > 1
        for name, value in {"KUBECLR_IMAGE": opts.image, "KUBECLR_SECRET_NAME": opts.secret_name,
                            "KUBECLR_NODE_SELECTOR": json.dumps(opts.node_selector),
                            "KUBECLR_GPU_TOLERATION": str(opts.gpu_toleration).lower(),
                            "KUBECLR_POD_CPU": opts.pretrain_cpu, "KUBECLR_POD_MEMORY": opts.pretrain_memory,
                            "KUBECLR_SHM_SIZE": opts.shm_size,
                            "KUBECLR_TIMEOUT_S": str(opts.pretrain_timeout_s),
                            "KUBECLR_DELETE_JOB": str(opts.delete_pytorchjob).lower(),
                            "KUBECLR_LAUNCHER_ONLY": str(opts.launcher).lower(),
                            "KUBECLR_PRIORITY_CLASS": opts.priority_class}.items():
            pre.set_env_variable(name, value)
        kubernetes.use_field_path_as_env(pre, "KUBECLR_SERVICE_ACCOUNT", "spec.serviceAccountName")
        kubernetes.add_pod_label(pre, *PRETRAIN_POD_LABEL)

        feats = c.extract_features(encoder=pre.outputs["encoder"], stats=stats.outputs["stats"], train=train,
                                   val=val, test=test, model_config=model_config, eval_config=eval_config,
                                   pretrain_config=pretrain_config, arch=arch, **common)
        feats.set_display_name("Extract features").set_caching_options(True)
        if opts.extract_gpu:
            feats.set_accelerator_type(GPU_RESOURCE).set_accelerator_limit(1)
            _gpu_settings(feats, opts)

        lin = c.linear_eval(features=feats.outputs["features"], encoder=pre.outputs["encoder"],
                            stats=stats.outputs["stats"], train=train, val=val, test=test,
                            data_config=data_config, model_config=model_config, augment_config=augment_config,
                            pretrain_config=pretrain_config, eval_config=eval_config, arch=arch, **common)
        lin.set_display_name("Linear evaluation & kNN").set_caching_options(True)

        rep = c.report(train=train, val=val, test=test, stats=stats.outputs["stats"],
                       history=pre.outputs["history"], features=feats.outputs["features"],
                       results=lin.outputs["results"], encoder=pre.outputs["encoder"], data_config=data_config,
                       model_config=model_config, augment_config=augment_config, pretrain_config=pretrain_config,
                       eval_config=eval_config, cifar_source=cifar_source, cifar_md5=cifar_md5, arch=arch,
                       epochs=epochs, batch_size=batch_size, lr=lr, temperature=temperature,
                       checkpoint_uri=checkpoint_uri, mirror_uri=mirror_uri, export_uri=export_uri, **common)
        rep.set_display_name("Report").set_caching_options(False)

        for task in (split, stats, pre, feats, lin, rep):
            _s3_env(task, opts)
        return Outputs(report=rep.outputs["html"], summary=rep.outputs["summary"],
                       metrics_json=rep.outputs["metrics_json"], encoder=pre.outputs["encoder"])

    return simclr_cifar10


def compile_pipeline(cfg: Config, output: str, opts: CompileOptions = CompileOptions()) -> str:
    """Compile the pipeline to KFP IR YAML at ``output``; return the path.

    Raises:
        UserError: ``output`` is a directory or cannot be written (nothing is left behind).
    """
    from kfp import compiler

    from kubeclr.io import atomic_path, make_dir

    if Path(output).is_dir():
        raise UserError(f"output {output}: is a directory (name a file in it, e.g. "
                        f"{Path(output) / 'simclr-cifar10.yaml'})")
    make_dir("output folder", Path(output).parent)
    pipeline = build_pipeline(cfg, opts)
    try:
        with atomic_path(output) as tmp:
            compiler.Compiler().compile(pipeline, package_path=str(tmp.with_suffix(".yaml")))
            tmp.with_suffix(".yaml").replace(tmp)
    except OSError as exc:
        raise UserError(f"output {output}: cannot be written ({exc.strerror or exc})") from None
    return output
