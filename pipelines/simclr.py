"""The ``simclr-cifar10`` pipeline: wiring only.

Six steps (docs/architecture.md), after a small never-cached task that fingerprints the
dataset source (the data step's cache key follows the source's content), and before the
regression gate, which fails the run after the report when the gate failed::

    fingerprint ─> download_split ─┬─> compute_stats ─┬─> pretrain ─> extract_features ─> linear_eval ─> report
                                   └──────────────────┴───────────────────────────────────────────────────┘
                                                                                    report ─> regression_gate
                                                                      linear_eval ─> export_model (ONNX, TorchScript)
                                                     export_model, report ─> deploy_model (compile --deploy)
                                                            export_model ─> register_model (registry.url)

The sweep variant (``compile --sweep``) runs the data steps once, then pretrain → extract_features →
linear_eval per trial in a ``dsl.ParallelFor``, and ranks the trials in a ``leaderboard`` step
(:mod:`kubeclr.steps.leaderboard`) instead of the report and the gate.

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

from kfp import dsl
from kfp.dsl import HTML, Dataset, Markdown, Model

from kubeclr.cluster.k8s import S3_SECRET_KEYS  # noqa: F401  (the pipeline's Secret keys, for its readers)
from kubeclr.components import build as build_components
from kubeclr.config import UI_PARAMS, Config, pipeline_parameters
from kubeclr.config.sweep import Sweep
from kubeclr.errors import UserError
from kubeclr.launch.settings import CompileOptions
from kubeclr.pipelines.tasks import requests, s3_env, small, train_and_evaluate
from kubeclr.report.canary import IMAGE_ENV

log = logging.getLogger(__name__)

PIPELINE_NAME = "simclr-cifar10"
# The pipeline's own outputs: what `run --local` copies to --output-dir.
Outputs = NamedTuple(
    "Outputs",
    [("report", HTML), ("summary", Markdown), ("metrics_json", Dataset), ("encoder", Model), ("model", Model)],
)
# A sweep's: the leaderboard in the report's place, the winner's encoder.
SweepOutputs = NamedTuple(
    "SweepOutputs", [("report", HTML), ("summary", Markdown), ("metrics_json", Dataset), ("encoder", Model)]
)


PARAM_HELP = {
    "run_name": "Name shown in the report, metrics and export paths ('' = this run's name).",
    **{p.name: p.help for p in UI_PARAMS},
    "gpus_per_node": "GPUs per node for pretraining (torchrun, one process per GPU).",
    "nodes": "Nodes for pretraining; more than 1 launches a multi-node job (see engine).",
    "config": "Every other config key, by section ({section: {key: value}}); a key of a parameter "
    "above must not appear here.",
}


def build_pipeline(cfg: Config, opts: CompileOptions = CompileOptions(), sweep: Sweep | None = None) -> Callable:
    """Return the pipeline function with defaults taken from ``cfg`` (the sweep variant with ``sweep``).

    Raises:
        UserError: a sweep with ``opts.deploy`` or ``registry.url`` (a sweep exports nothing).
    """
    if sweep is not None and (opts.deploy or cfg.registry.url):
        raise UserError(
            "a sweep ends at its leaderboard and exports, deploys or registers nothing: drop --deploy / "
            "registry.url, or run the winner's setting as a single run"
        )
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
        small(content)

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

        for task in (split, stats):
            requests(task, opts)
        for task in (content, split, stats):
            s3_env(task, launch)

        data = dict(train=train, val=val, test=test, stats=stats.outputs["stats"])
        common = dict(gpus=gpus_per_node, nodes=nodes, job_name=job, cached_name=run_name)
        if sweep is not None:  # the trials share the data steps above
            return _sweep(c, opts, sweep, resolved, data, common, run_name=run_name, job=job)
        pre, feats, lin = train_and_evaluate(
            c,
            opts,
            config=resolved,
            data=data,
            checkpoint_scope=dsl.PIPELINE_JOB_ID_PLACEHOLDER if opts.checkpoints_per_run else "",
            run_name=run_name,
            **common,
        )

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

        exported = c.export_model(
            config=resolved,
            encoder=pre.outputs["encoder"],
            stats=stats.outputs["stats"],
            train=train,
            test=test,
            classifier=lin.outputs["classifier"],
            results=lin.outputs["results"],
            run_name=run_name,
        )
        exported.set_display_name("Export for serving (ONNX, TorchScript)").set_caching_options(True)

        if opts.deploy:
            dep = c.deploy_model(
                config=resolved, model=exported.outputs["model"], metrics_json=rep.outputs["metrics_json"], **names
            )
            dep.set_display_name("Deploy the model (KServe InferenceService)").set_caching_options(False)
            dep.set_env_variable(IMAGE_ENV, launch.image)  # the serve image is this image's -serve tag
            small(dep, "1Gi", "2Gi")  # it imports torch
            s3_env(dep, launch)

        if cfg.registry.url:  # the Model Registry: set at compile time, read at run time
            reg = c.register_model(config=resolved, model=exported.outputs["model"], **names)
            reg.set_display_name("Register the model (Model Registry)").set_caching_options(False)
            small(reg, "512Mi")

        verdict = c.regression_gate(config=resolved, metrics_json=rep.outputs["metrics_json"], **names)
        verdict.set_display_name("Regression gate").set_caching_options(False)
        small(verdict, "1Gi", "2Gi")

        for task in (rep, exported):
            requests(task, opts)
        s3_env(rep, launch)
        return Outputs(
            report=rep.outputs["html"],
            summary=rep.outputs["summary"],
            metrics_json=rep.outputs["metrics_json"],
            encoder=pre.outputs["encoder"],
            model=exported.outputs["model"],
        )

    if sweep is not None:
        simclr_cifar10.__annotations__["return"] = SweepOutputs
    # KFP shows these as the parameters' descriptions in the UI (the DAG is traced, not embedded as source)
    simclr_cifar10.__doc__ = "SimCLR on CIFAR-10 or your own images.\n\nArgs:\n" + "".join(
        f"    {name}: {PARAM_HELP[name]}\n" for name in inspect.signature(simclr_cifar10).parameters
    )
    return dsl.pipeline(
        name=PIPELINE_NAME if sweep is None else f"{PIPELINE_NAME}-sweep",
        pipeline_root=opts.pipeline_root,
        description="SimCLR self-supervised pretraining on CIFAR-10/100, STL-10 or an image folder, "
        + (
            "with linear evaluation and an HTML report (kubeclr)."
            if sweep is None
            else f"as a sweep of {len(sweep)} trials on shared data, ranked on validation in a leaderboard (kubeclr)."
        ),
    )(simclr_cifar10)


def _sweep(c, opts, sweep: Sweep, resolved, data: dict, common: dict, *, run_name, job) -> SweepOutputs:
    """One trial per ParallelFor iteration on the shared data, then the leaderboard over their collected outputs."""
    with dsl.ParallelFor(items=sweep.items(), parallelism=sweep.parallelism) as trial:
        scope = dsl.PIPELINE_JOB_ID_PLACEHOLDER if opts.checkpoints_per_run else ""
        spec = c.trial_config(config=resolved, trial=trial, checkpoint_scope=scope, run_name=run_name, job_name=job)
        spec.set_display_name("Trial config").set_caching_options(False)
        small(spec)
        run = train_and_evaluate(
            c,
            opts,
            config=spec.outputs["config"],
            data=data,
            checkpoint_scope=spec.outputs["checkpoint_scope"],  # <scope>/trial-NN-<digest>: never shared
            run_name=spec.outputs["run_name"],
            **common,
        )
    board = c.leaderboard(
        config=resolved,
        sweep=sweep.spec(),
        histories=dsl.Collected(run.pretrain.outputs["history"]),
        results=dsl.Collected(run.linear_eval.outputs["results"]),
        encoders=dsl.Collected(run.pretrain.outputs["encoder"]),
        run_name=run_name,
        job_name=job,
    )
    board.set_display_name("Leaderboard").set_caching_options(False)
    requests(board, opts)
    s3_env(board, opts.launch)  # it exports the leaderboard and the winner under storage.export_uri
    return SweepOutputs(
        report=board.outputs["html"],
        summary=board.outputs["summary"],
        metrics_json=board.outputs["leaderboard_json"],
        encoder=board.outputs["encoder"],
    )


def compile_pipeline(
    cfg: Config, output: str, opts: CompileOptions = CompileOptions(), sweep: Sweep | None = None
) -> str:
    """Compile the pipeline (the sweep variant with ``sweep``) to KFP IR YAML at ``output``; return the path.

    Raises:
        UserError: ``output`` is a directory or cannot be written (nothing is left behind).
    """
    from kubeclr.atomic import atomic_path, make_dir
    from kubeclr.pipelines.ir import write_ir

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
    pipeline = build_pipeline(cfg, opts, sweep)
    try:
        with atomic_path(output) as tmp:
            write_ir(pipeline, tmp.with_suffix(".yaml"))
            tmp.with_suffix(".yaml").replace(tmp)
    except OSError as exc:
        raise UserError(f"output {output}: cannot be written ({exc.strerror or exc})") from None
    return output
