"""The ``simclr-cifar10`` pipeline: wiring only.

Six steps (docs/architecture.md), after a small never-cached task that fingerprints the
dataset source (the data step's cache key follows the source's content), and before the
regression gate, which fails the run after the report when the gate failed::

    fingerprint ─> download_split ─┬─> compute_stats ─┬─> pretrain ─> extract_features ─> linear_eval ─> report
                                   └──────────────────┴───────────────────────────────────────────────────┘
                                                                                    report ─> regression_gate

Parameter defaults come from a preset (or config file) at compile time. The
parameters a researcher changes in the UI are top-level
(:data:`kubeclr.config.UI_PARAMS`); every other key travels in the one struct
parameter ``config``. The first step merges them once and hands the resolved
config to every later step.
"""

# no `from __future__ import annotations`: KFP reads the pipeline signature at runtime

import inspect
import logging
from pathlib import Path
from typing import Callable, NamedTuple

from kfp import dsl, kubernetes
from kfp.dsl import HTML, Dataset, Markdown, Model

from kubeclr.cluster.k8s import GPU_RESOURCE, S3_SECRET_KEYS
from kubeclr.cluster.pods import QUEUE_LABEL
from kubeclr.components import build as build_components
from kubeclr.config import UI_PARAMS, Config, pipeline_parameters
from kubeclr.errors import UserError
from kubeclr.launch.settings import SERVICE_ACCOUNT_ENV, CompileOptions, LaunchSettings
from kubeclr.report.canary import IMAGE_ENV

log = logging.getLogger(__name__)

PIPELINE_NAME = "simclr-cifar10"
PRETRAIN_POD_LABEL = ("app.kubernetes.io/component", "simclr-pretrain")

# The pipeline's own outputs: what `run --local` copies to --output-dir.
Outputs = NamedTuple(
    "Outputs", [("report", HTML), ("summary", Markdown), ("metrics_json", Dataset), ("encoder", Model)]
)


def _gpu_settings(task: dsl.PipelineTask, launch: LaunchSettings) -> None:
    for toleration in launch.tolerations():
        kubernetes.add_toleration(task, **toleration)
    for key, value in launch.node_selector.items():
        kubernetes.add_node_selector(task, label_key=key, label_value=value)


def _queue(task: dsl.PipelineTask, launch: LaunchSettings) -> None:
    """Kueue admits the pod by its LocalQueue label (GPU tasks only: the CPU steps need no quota)."""
    if launch.queue_name:
        kubernetes.add_pod_label(task, QUEUE_LABEL, launch.queue_name)


def _requests(task: dsl.PipelineTask, opts: CompileOptions) -> None:
    task.set_cpu_request(opts.step_cpu).set_memory_request(opts.step_memory).set_memory_limit(opts.step_memory)


def _s3_env(task: dsl.PipelineTask, launch: LaunchSettings) -> None:
    if launch.secret_name:
        # optional: clusters using IRSA / workload identity need no Secret at all
        kubernetes.use_secret_as_env(
            task, secret_name=launch.secret_name, secret_key_to_env={k: k for k in S3_SECRET_KEYS}, optional=True
        )


PARAM_HELP = {
    "run_name": "Name shown in the report, metrics and export paths ('' = this run's name).",
    **{p.name: p.help for p in UI_PARAMS},
    "gpus_per_node": "GPUs per node for pretraining (torchrun, one process per GPU).",
    "nodes": "Nodes for pretraining; more than 1 launches a multi-node job (see engine).",
    "config": "Every other config key, by section ({section: {key: value}}); a key of a parameter "
    "above must not appear here.",
}


def build_pipeline(cfg: Config, opts: CompileOptions = CompileOptions()) -> Callable:
    """Return the pipeline function with defaults taken from ``cfg``."""
    c = build_components(opts.launch.image)
    ui, struct = pipeline_parameters(cfg)
    launch = opts.launch

    def simclr_cifar10(
        run_name: str = "",
        cifar_source: str = ui["cifar_source"],
        cifar_md5: str = ui["cifar_md5"],
        data_format: str = ui["data_format"],
        arch: str = ui["arch"],
        epochs: int = ui["epochs"],
        batch_size: int = ui["batch_size"],
        lr: float = ui["lr"],
        temperature: float = ui["temperature"],
        checkpoint_uri: str = ui["checkpoint_uri"],
        mirror_uri: str = ui["mirror_uri"],
        export_uri: str = ui["export_uri"],
        history_uri: str = ui["history_uri"],
        engine: str = ui["engine"],
        gpus_per_node: int = 1,
        nodes: int = 2 if launch.launcher_only else 1,
        config: dict = struct,
    ) -> Outputs:
        job = dsl.PIPELINE_JOB_NAME_PLACEHOLDER
        names = dict(run_name=run_name, job_name=job)
        # Cached steps take no job name: KFP fills it in before computing the cache key, and it
        # differs every run, so it would make every run a cache miss.
        cached = dict(run_name=run_name)

        # never cached: what the source holds now; as the data step's input it makes that step's
        # cache key follow the content (a replaced file under the same s3:// prefix is a miss)
        content = c.fingerprint(config=config, cifar_source=cifar_source, cifar_md5=cifar_md5, data_format=data_format)
        content.set_display_name("Fingerprint the dataset source").set_caching_options(False)
        content.set_cpu_request("100m").set_memory_request("256Mi").set_memory_limit("1Gi")

        split = c.download_split(
            config=config,
            cifar_source=cifar_source,
            cifar_md5=cifar_md5,
            data_format=data_format,
            source_fingerprint=content.output,
            arch=arch,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            temperature=temperature,
            checkpoint_uri=checkpoint_uri,
            mirror_uri=mirror_uri,
            export_uri=export_uri,
            history_uri=history_uri,
            engine=engine,
            **cached,
        )
        split.set_display_name("Download, decode & split the dataset").set_caching_options(True)
        resolved = split.outputs["Output"]  # the run's config, every key: every later step's `config`
        train, val, test = split.outputs["train"], split.outputs["val"], split.outputs["test"]

        stats = c.compute_stats(config=resolved, train=train, **cached)
        stats.set_display_name("Normalisation statistics").set_caching_options(True)

        pre = c.pretrain(
            config=resolved,
            train=train,
            stats=stats.outputs["stats"],
            gpus=gpus_per_node,
            nodes=nodes,
            checkpoint_scope=dsl.PIPELINE_JOB_ID_PLACEHOLDER if opts.checkpoints_per_run else "",
            **names,
        )
        pre.set_caching_options(opts.cache_pretrain)
        if launch.launcher_only:  # the GPUs, /dev/shm and node placement go to the job's pods (settings below)
            pre.set_display_name("SimCLR pretraining (multi-node job launcher)")
            pre.set_cpu_request("500m").set_cpu_limit("1").set_memory_request("2Gi").set_memory_limit("4Gi")
            # the job's pods carry the queue label themselves
        else:
            pre.set_display_name("SimCLR pretraining (GPU)")
            pre.set_accelerator_type(GPU_RESOURCE).set_accelerator_limit(gpus_per_node)
            pre.set_cpu_request(launch.cpu).set_cpu_limit(launch.cpu)
            pre.set_memory_request(launch.memory).set_memory_limit(launch.memory)
            _gpu_settings(pre, launch)
            _queue(pre, launch)
            kubernetes.empty_dir_mount(
                pre, volume_name="dshm", mount_path="/dev/shm", medium="Memory", size_limit=launch.shm_size
            )
        # a retried pod resumes from the newest complete checkpoint at checkpoint_uri
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

        feats = c.extract_features(
            config=resolved,
            encoder=pre.outputs["encoder"],
            stats=stats.outputs["stats"],
            train=train,
            val=val,
            test=test,
            **cached,
        )
        feats.set_display_name("Extract features").set_caching_options(True)
        if opts.extract_gpu:
            feats.set_accelerator_type(GPU_RESOURCE).set_accelerator_limit(1)
            _gpu_settings(feats, launch)
            _queue(feats, launch)

        lin = c.linear_eval(
            config=resolved,
            features=feats.outputs["features"],
            encoder=pre.outputs["encoder"],
            stats=stats.outputs["stats"],
            train=train,
            val=val,
            test=test,
            **cached,
        )
        lin.set_display_name("Linear evaluation & kNN").set_caching_options(True)

        rep = c.report(
            config=resolved,
            train=train,
            val=val,
            test=test,
            stats=stats.outputs["stats"],
            history=pre.outputs["history"],
            features=feats.outputs["features"],
            results=lin.outputs["results"],
            encoder=pre.outputs["encoder"],
            run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
            **names,
        )
        rep.set_display_name("Report").set_caching_options(False)
        rep.set_env_variable(IMAGE_ENV, launch.image)  # the run history records which image ran

        verdict = c.regression_gate(config=resolved, metrics_json=rep.outputs["metrics_json"], **names)
        verdict.set_display_name("Regression gate").set_caching_options(False)
        verdict.set_cpu_request("100m").set_memory_request("1Gi").set_memory_limit("2Gi")

        for task in (split, stats, feats, lin, rep):
            _requests(task, opts)
        for task in (content, split, stats, pre, feats, lin, rep):
            _s3_env(task, launch)
        return Outputs(
            report=rep.outputs["html"],
            summary=rep.outputs["summary"],
            metrics_json=rep.outputs["metrics_json"],
            encoder=pre.outputs["encoder"],
        )

    # KFP shows these as the parameters' descriptions in the UI (the DAG is traced, not embedded as source)
    simclr_cifar10.__doc__ = "SimCLR on CIFAR-10 or your own images.\n\nArgs:\n" + "".join(
        f"    {name}: {PARAM_HELP[name]}\n" for name in inspect.signature(simclr_cifar10).parameters
    )
    return dsl.pipeline(
        name=PIPELINE_NAME,
        pipeline_root=opts.pipeline_root,
        description="SimCLR self-supervised pretraining on CIFAR-10/100, STL-10 or an image folder, "
        "with linear evaluation and an HTML report (kubeclr).",
    )(simclr_cifar10)


def compile_pipeline(cfg: Config, output: str, opts: CompileOptions = CompileOptions()) -> str:
    """Compile the pipeline to KFP IR YAML at ``output``; return the path.

    Raises:
        UserError: ``output`` is a directory or cannot be written (nothing is left behind).
    """
    from kfp import compiler

    from kubeclr.atomic import atomic_path, make_dir

    if Path(output).is_dir():
        raise UserError(
            f"output {output}: is a directory (name a file in it, e.g. {Path(output) / 'simclr-cifar10.yaml'})"
        )
    make_dir("output folder", Path(output).parent)
    if opts.launch.priority_class and cfg.cluster.engine == "trainjob":
        log.warning(
            "priority class %r applies to PyTorchJob pods only: a TrainJob cannot set one (the step refuses it "
            "when engine=trainjob); set it in a TrainingRuntime of your own (cluster.runtime_name)",
            opts.launch.priority_class,
        )
    pipeline = build_pipeline(cfg, opts)
    try:
        with atomic_path(output) as tmp:
            compiler.Compiler().compile(pipeline, package_path=str(tmp.with_suffix(".yaml")))
            tmp.with_suffix(".yaml").replace(tmp)
    except OSError as exc:
        raise UserError(f"output {output}: cannot be written ({exc.strerror or exc})") from None
    return output
