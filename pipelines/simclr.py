"""The ``simclr`` pipeline: wiring only.

Six steps (docs/architecture.md), after the one task that resolves the run's config and
fingerprints the dataset source (never cached), and before the regression gate, which fails the
run after the report when the gate failed::

    resolve_config ─> download_split ─> compute_stats ─> pretrain ─> extract_features ─> linear_eval ─> report
                                                               report ─> regression_gate
                                                          linear_eval ─> export_model (ONNX, TorchScript)
                                                 export_model, report ─> deploy_model (compile --deploy)
                                                         export_model ─> register_model (registry.url)

Each cached task gets only the config keys its step reads (its slice, from resolve_config); the
report, the gate, deployment and registration, never cached, get the whole config.

The sweep variant (``compile --sweep``) runs the data steps once, then trial_config → pretrain →
extract_features → linear_eval per trial in a ``dsl.ParallelFor``, and ranks the trials in a
``leaderboard`` step (:mod:`kubeclr.steps.leaderboard`) instead of the report and the gate.

Parameter defaults come from a preset (or config file) at compile time. The parameters are one
table (:data:`PARAMS`): what a researcher changes in the UI (:data:`kubeclr.config.UI_PARAMS`),
the run's name and its GPUs, and the one struct ``config`` with every other run-time key. Only
``resolve_config`` reads ``config`` and the UI parameters. The compile-time ``metrics`` section is
in every task's environment (:func:`kubeclr.config.compile_time_env`).
"""

# no `from __future__ import annotations`: KFP reads the pipeline signature at runtime

import inspect
import logging
from pathlib import Path
from typing import Any, Callable, NamedTuple

from kfp import dsl
from kfp.dsl import HTML, Dataset, Markdown, Model
from kfp.dsl.pipeline_context import Pipeline

from kubeclr.components import build as build_components
from kubeclr.config import UI_PARAMS, Config, compile_time_env, pipeline_parameters
from kubeclr.config.sweep import Sweep
from kubeclr.errors import UserError
from kubeclr.launch.settings import CompileOptions
from kubeclr.pipelines.tasks import requests, s3_env, small, train_and_evaluate
from kubeclr.report.canary import IMAGE_ENV
from kubeclr.steps.trial_config import TRIAL_TASKS

log = logging.getLogger(__name__)

PIPELINE_NAME = "simclr"
# The pipeline's own outputs: what `run --local` copies to --output-dir.
Outputs = NamedTuple(
    "Outputs",
    [("report", HTML), ("summary", Markdown), ("metrics_json", Dataset), ("encoder", Model), ("model", Model)],
)
# A sweep's: the leaderboard in the report's place, the winner's encoder.
SweepOutputs = NamedTuple(
    "SweepOutputs", [("report", HTML), ("summary", Markdown), ("metrics_json", Dataset), ("encoder", Model)]
)


class Param(NamedTuple):
    """One parameter of the pipeline: its name, type, help (the UI's description) and compiled default."""

    name: str
    type: type
    help: str
    default: Any


def params(cfg: Config, opts: CompileOptions) -> list[Param]:
    """The pipeline's parameters, in the UI's order: the one table its signature is made from."""
    ui, struct = pipeline_parameters(cfg)
    return [
        Param("run_name", str, "Name shown in the report, metrics and export paths ('' = this run's name).", ""),
        *(Param(p.name, p.type, p.help, ui[p.name]) for p in UI_PARAMS),
        Param("gpus_per_node", int, "GPUs per node for pretraining (torchrun, one process per GPU).", 1),
        Param(
            "nodes",
            int,
            "Nodes for pretraining; more than 1 launches a multi-node job (see engine).",
            2 if opts.launch.launcher_only else 1,
        ),
        Param(
            "config",
            dict,
            "Every other run-time config key, by section ({section: {key: value}}); a key of a parameter "
            "above must not appear here, nor the metrics section (set when the pipeline is compiled).",
            struct,
        ),
    ]


def with_signature(body: Callable[..., Any], table: list[Param], returns: Any, doc: str) -> Callable:
    """``body(**parameters)`` as a function whose signature and docstring KFP reads from ``table``.

    KFP calls a pipeline function with one positional channel per parameter, in signature order.
    """
    names = [p.name for p in table]

    def pipeline(*channels: Any) -> Any:
        return body(**dict(zip(names, channels)))

    pipeline.__signature__ = inspect.Signature(
        [
            inspect.Parameter(p.name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=p.default, annotation=p.type)
            for p in table
        ],
        return_annotation=returns,
    )
    pipeline.__annotations__ = {**{p.name: p.type for p in table}, "return": returns}
    pipeline.__name__ = pipeline.__qualname__ = PIPELINE_NAME.replace("-", "_")
    # KFP shows these as the parameters' descriptions in the UI (the DAG is traced, not embedded as source)
    pipeline.__doc__ = f"{doc}\n\nArgs:\n" + "".join(f"    {p.name}: {p.help}\n" for p in table)
    return pipeline


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
    launch = opts.launch
    env = compile_time_env(cfg)

    def simclr(run_name: str, gpus_per_node: int, nodes: int, config: dict, **ui: Any) -> Any:
        job = dsl.PIPELINE_JOB_NAME_PLACEHOLDER
        # Cached steps take no job name: KFP fills it in before computing the cache key, and it
        # differs every run, so it would make every run a cache miss.
        names = dict(run_name=run_name, job_name=job)

        # never cached: the one resolution of the config; each cached task below takes only its slice,
        # and the data step the source's fingerprint (a replaced file under the same s3:// prefix is a miss)
        resolved = c.resolve_config(config=config, **ui)
        resolved.set_display_name("Resolve the config & fingerprint the data source").set_caching_options(False)
        small(resolved)
        whole = resolved.outputs["config"]  # for the tasks that are never cached

        split = c.download_split(
            config=resolved.outputs["download_split"],
            source_fingerprint=resolved.outputs["source_fingerprint"],
            run_name=run_name,
        )
        split.set_display_name("Download, decode & split the dataset").set_caching_options(True)
        train, val, test = split.outputs["train"], split.outputs["val"], split.outputs["test"]

        stats = c.compute_stats(train=train, run_name=run_name)
        stats.set_display_name("Normalisation statistics").set_caching_options(True)

        for task in (split, stats):
            requests(task, opts)
        for task in (resolved, split, stats):
            s3_env(task, launch)

        data = dict(train=train, val=val, test=test, stats=stats.outputs["stats"])
        common = dict(gpus=gpus_per_node, nodes=nodes, job_name=job, cached_name=run_name)
        if sweep is not None:  # the trials share the data steps above
            outputs = _sweep(c, opts, sweep, whole, data, common, run_name=run_name, job=job)
        else:
            outputs = _single(c, opts, resolved, data, common, names, register=bool(cfg.registry.url))
        for task in Pipeline.get_default_pipeline().tasks.values():  # the compile-time sections, everywhere
            for name, value in env.items():
                task.set_env_variable(name, value)
        return outputs

    table = params(cfg, opts)
    doc = "SimCLR on CIFAR-10/100, STL-10 or your own images."
    pipeline = with_signature(simclr, table, Outputs if sweep is None else SweepOutputs, doc)
    return dsl.pipeline(
        name=PIPELINE_NAME if sweep is None else f"{PIPELINE_NAME}-sweep",
        pipeline_root=opts.pipeline_root,
        description="SimCLR self-supervised pretraining on CIFAR-10/100, STL-10 or an image folder, "
        + (
            "with linear evaluation and an HTML report (kubeclr)."
            if sweep is None
            else f"as a sweep of {len(sweep)} trials on shared data, ranked on validation in a leaderboard (kubeclr)."
        ),
    )(pipeline)


def _single(c, opts: CompileOptions, resolved, data: dict, common: dict, names: dict, *, register: bool) -> Outputs:
    """One run: train and evaluate, then the report, the export, deployment, registration and the gate."""
    launch, whole = opts.launch, resolved.outputs["config"]
    run_name = names["run_name"]
    pre, feats, lin = train_and_evaluate(
        c,
        opts,
        configs={task: resolved.outputs[task] for task in TRIAL_TASKS},
        data=data,
        checkpoint_scope=dsl.PIPELINE_JOB_ID_PLACEHOLDER if opts.checkpoints_per_run else "",
        run_name=run_name,
        **common,
    )

    rep = c.report(
        config=whole,
        **data,
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
        config=resolved.outputs["export_model"],
        encoder=pre.outputs["encoder"],
        stats=data["stats"],
        train=data["train"],
        test=data["test"],
        classifier=lin.outputs["classifier"],
        results=lin.outputs["results"],
        run_name=run_name,
    )
    exported.set_display_name("Export for serving (ONNX, TorchScript)").set_caching_options(True)

    if opts.deploy:
        dep = c.deploy_model(
            config=whole, model=exported.outputs["model"], metrics_json=rep.outputs["metrics_json"], **names
        )
        dep.set_display_name("Deploy the model (KServe InferenceService)").set_caching_options(False)
        dep.set_env_variable(IMAGE_ENV, launch.image)  # the serve image is this image's -serve tag
        small(dep, "1Gi", "2Gi")  # it imports torch
        s3_env(dep, launch)

    if register:  # the Model Registry: set at compile time (registry.url), read at run time
        reg = c.register_model(config=whole, model=exported.outputs["model"], **names)
        reg.set_display_name("Register the model (Model Registry)").set_caching_options(False)
        small(reg, "512Mi")

    verdict = c.regression_gate(config=whole, metrics_json=rep.outputs["metrics_json"], **names)
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


def _sweep(c, opts, sweep: Sweep, whole, data: dict, common: dict, *, run_name, job) -> SweepOutputs:
    """One trial per ParallelFor iteration on the shared data, then the leaderboard over their collected outputs."""
    with dsl.ParallelFor(items=sweep.items(), parallelism=sweep.parallelism) as trial:
        scope = dsl.PIPELINE_JOB_ID_PLACEHOLDER if opts.checkpoints_per_run else ""
        spec = c.trial_config(config=whole, trial=trial, checkpoint_scope=scope, run_name=run_name, job_name=job)
        spec.set_display_name("Trial config").set_caching_options(False)
        small(spec)
        run = train_and_evaluate(
            c,
            opts,
            configs={task: spec.outputs[task] for task in TRIAL_TASKS},
            data=data,
            checkpoint_scope=spec.outputs["checkpoint_scope"],  # <scope>/trial-NN-<digest>: never shared
            run_name=spec.outputs["run_name"],
            **common,
        )
    board = c.leaderboard(
        config=whole,
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
        raise UserError(f"output {output}: is a directory (name a file in it, e.g. {Path(output) / 'simclr.yaml'})")
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
