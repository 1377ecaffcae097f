"""The pipeline's KFP components, all in one place: each a typed function, a docstring and one call.

Every function below is one task of the pipeline: it documents each parameter (KFP shows the
docstring in the UI) and makes one call into the library (``kubeclr.steps.<step>.run`` through
:func:`kubeclr.steps.runtime.run_step`). :func:`build` wraps them as lightweight KFP components
on the project image with ``install_kfp_package=False``: nothing is pip-installed at run time, so
air-gapped clusters work and ``kfp.local.SubprocessRunner`` runs them as they are. KFP embeds each
function's source in the compiled pipeline, so a body imports what it uses.

``@task(cached=True)`` marks a task whose result KFP may reuse: it takes a ``config`` that is its
slice of the run's config (what its step ``READS``), never the whole of it. The first task,
``resolve_config``, is generated from the table of UI parameters (:data:`kubeclr.config.UI_PARAMS`),
the one place they are declared.
"""

# no `from __future__ import annotations`: KFP reads the annotations at runtime

import inspect
import linecache
from types import SimpleNamespace
from typing import Callable, NamedTuple

from kfp import dsl
from kfp.dsl import HTML, ClassificationMetrics, Dataset, Input, Markdown, Metrics, Model, Output

from kubeclr import IMAGE
from kubeclr.config import UI_PARAMS
from kubeclr.errors import UserError

TASKS: dict[str, Callable] = {}  # every task's function, in pipeline order
CACHED: list[str] = []  # the tasks KFP may cache: each receives its config slice from resolve_config


def task(*, cached: bool) -> Callable[[Callable], Callable]:
    def register(fn: Callable) -> Callable:
        TASKS[fn.__name__] = fn
        if cached:
            CACHED.append(fn.__name__)
        return fn

    return register


def sliced() -> list[str]:
    """The cached tasks that take a config slice (all but compute_stats, which reads no key)."""
    return [name for name in CACHED if "config" in inspect.signature(TASKS[name]).parameters]


# -- the data steps ---------------------------------------------------------------------------


@task(cached=True)
def download_split(
    config: dict,
    source_fingerprint: str,
    run_name: str,
    train: Output[Dataset],
    val: Output[Dataset],
    test: Output[Dataset],
    manifest: Output[Dataset],
):
    """Download, verify, decode and split the dataset.

    Args:
        config: the ``data`` section and ``storage.mirror_uri`` (from ``resolve_config``).
        source_fingerprint: what the source holds now (from ``resolve_config``): part of this
            step's cache key, so a changed file in the source is a cache miss. Not read otherwise.
        run_name: the run's name in logs and metrics ('' = 'unnamed').
        train: uint8 images + labels + class names of the train split, and the unlabelled images.
        val: the validation split.
        test: the test split.
        manifest: every image file read and its SHA-256, the sizes, the tarball's MD5 (JSON).
    """
    from kubeclr.steps import download_split, runtime

    runtime.run_step(
        "download_split", download_split.run, config, train.path, val.path, test.path, manifest.path, run_name=run_name
    )


@task(cached=True)
def compute_stats(train: Input[Dataset], run_name: str, stats: Output[Dataset]):
    """Per-channel mean and std of the train split, in [0, 1], accumulated in float64.

    Args:
        train: the train split from ``download_split``.
        run_name: the run's name in logs and metrics ('' = 'unnamed').
        stats: JSON with ``mean``, ``std`` and ``count``.
    """
    from kubeclr.steps import compute_stats, runtime

    runtime.run_step("compute_stats", compute_stats.run, {}, train.path, stats.path, run_name=run_name)


# -- training and evaluation (once per run, or once per trial of a sweep) -----------------------


@task(cached=True)  # only with compile --cache-pretrain; the pipeline decides
def pretrain(
    config: dict,
    train: Input[Dataset],
    stats: Input[Dataset],
    gpus: int,
    nodes: int,
    checkpoint_scope: str,
    run_name: str,
    job_name: str,
    encoder: Output[Model],
    history: Output[Dataset],
):
    """SimCLR pretraining: ResNet encoder + projection head, NT-Xent, LARS.

    Args:
        config: what pretraining reads of the run's config (from ``resolve_config``).
        train: the train split.
        stats: normalisation statistics of the train split.
        gpus: GPUs per node; more than one trains with torchrun in this pod.
        nodes: nodes; more than one launches a TrainJob or PyTorchJob (``cluster.engine``).
        checkpoint_scope: sub-folder of ``storage.checkpoint_uri`` for this run (the KFP
            run ID on a cluster: task retries resume, the next scheduled run
            starts fresh); '' = checkpoint_uri itself.
        run_name: the run's name ('' = the KFP run's own name).
        job_name: the KFP run's name (filled in by the pipeline; '' when the task is cached).
        encoder: the encoder's state dict (``encoder.pt``).
        history: per-epoch loss, lr, throughput and the run summary (JSON).
    """
    from kubeclr.steps import pretrain, runtime

    runtime.run_step(
        "pretrain",
        pretrain.run,
        config,
        train.path,
        stats.path,
        encoder.path,
        history.path,
        run_name=run_name,
        job_name=job_name,
        checkpoint_scope=checkpoint_scope,
        gpus=gpus,
        nodes=nodes,
    )


@task(cached=True)
def extract_features(
    config: dict,
    encoder: Input[Model],
    stats: Input[Dataset],
    train: Input[Dataset],
    val: Input[Dataset],
    test: Input[Dataset],
    run_name: str,
    features: Output[Dataset],
):
    """Encode every image once with the frozen encoder (no projection head).

    Args:
        config: what feature extraction reads of the run's config (from ``resolve_config``).
        encoder: the pretrained encoder.
        stats: normalisation statistics.
        train: the train split.
        val: the validation split.
        test: the test split.
        run_name: the run's name in logs and metrics ('' = 'unnamed').
        features: float32 features and labels of the three splits.
    """
    from kubeclr.steps import extract_features, runtime

    runtime.run_step(
        "extract_features",
        extract_features.run,
        config,
        encoder.path,
        stats.path,
        train.path,
        val.path,
        test.path,
        features.path,
        run_name=run_name,
    )


@task(cached=True)
def linear_eval(
    config: dict,
    features: Input[Dataset],
    encoder: Input[Model],
    stats: Input[Dataset],
    train: Input[Dataset],
    val: Input[Dataset],
    test: Input[Dataset],
    run_name: str,
    metrics: Output[Metrics],
    confusion: Output[ClassificationMetrics],
    classifier: Output[Model],
    results: Output[Dataset],
):
    """Linear evaluation (logistic regression on frozen features) and kNN accuracy.

    Args:
        config: what evaluation reads of the run's config (from ``resolve_config``).
        features: features from ``extract_features`` (the default protocol).
        encoder: the encoder (the ``crops`` protocol trains on top of it).
        stats: normalisation statistics (``crops`` protocol).
        train: the train split (``crops`` protocol).
        val: the validation split (``crops`` protocol).
        test: the test split (``crops`` protocol).
        run_name: the run's name in logs and metrics ('' = 'unnamed').
        metrics: val/test top-1 and top-5 and kNN top-1, shown on the run page.
        confusion: the test confusion matrix with class names.
        classifier: the linear classifier's weights.
        results: every number above as JSON, for the report.
    """
    from kubeclr.steps import linear_eval, runtime

    runtime.run_step(
        "linear_eval",
        linear_eval.run,
        config,
        features.path,
        results.path,
        classifier.path,
        run_name=run_name,
        encoder_path=encoder.path,
        stats_path=stats.path,
        train_path=train.path,
        val_path=val.path,
        test_path=test.path,
        metrics=metrics,
        confusion=confusion,
    )


# -- after the evaluation -----------------------------------------------------------------------


@task(cached=False)
def report(
    config: dict,
    train: Input[Dataset],
    val: Input[Dataset],
    test: Input[Dataset],
    stats: Input[Dataset],
    history: Input[Dataset],
    features: Input[Dataset],
    results: Input[Dataset],
    encoder: Input[Model],
    run_name: str,
    job_name: str,
    run_id: str,
    html: Output[HTML],
    summary: Output[Markdown],
    metrics_json: Output[Dataset],
    metrics: Output[Metrics],
):
    """The HTML report, the Markdown summary and ``metrics.json``; the export when configured.

    Args:
        config: the run's resolved config (from ``resolve_config``), shown whole in the report.
        train: the train split (sizes, source).
        val: the validation split.
        test: the test split.
        stats: normalisation statistics.
        history: pretraining history (loss and lr curves, throughput).
        features: encoder features (t-SNE).
        results: linear evaluation and kNN results.
        encoder: the encoder (exported with the report when ``storage.export_uri`` is set).
        run_name: the run's name, shown in the report ('' = the KFP run's own name).
        job_name: the KFP run's name (filled in by the pipeline).
        run_id: the KFP run's ID (filled in by the pipeline), kept in the run history.
        html: the self-contained report, rendered on the run page.
        summary: the Markdown summary, rendered on the run page.
        metrics_json: ``metrics.json`` (schema in docs/metrics.md).
        metrics: headline scalars (accuracy, loss, throughput) for the run page.
    """
    from kubeclr.steps import report, runtime

    runtime.run_step(
        "report",
        report.run,
        config,
        run_name=run_name,
        job_name=job_name,
        train_path=train.path,
        val_path=val.path,
        test_path=test.path,
        stats_path=stats.path,
        history_path=history.path,
        features_path=features.path,
        results_path=results.path,
        html_out=html.path,
        markdown_out=summary.path,
        metrics_out=metrics_json.path,
        encoder_path=encoder.path,
        metrics=metrics,
        run_id=run_id,
    )


@task(cached=True)
def export_model(
    config: dict,
    encoder: Input[Model],
    stats: Input[Dataset],
    train: Input[Dataset],
    test: Input[Dataset],
    classifier: Input[Model],
    results: Input[Dataset],
    run_name: str,
    model: Output[Model],
):
    """Export the encoder and the linear probe to ONNX and TorchScript, checked, with a model card.

    Args:
        config: what the export reads of the run's config (from ``resolve_config``).
        encoder: the encoder from ``pretrain``.
        stats: normalisation statistics (baked into the exported encoder).
        train: the train split (its SHA-256 goes in the card).
        test: the test split (the exported files are checked on its images).
        classifier: the linear probe from ``linear_eval``.
        results: linear evaluation and kNN results (the card's accuracy).
        run_name: the run's name in the card ('' = 'unnamed').
        model: a folder: encoder.onnx, encoder.ts, classifier.onnx, classifier.ts, model.json
            (what ``simclr-pipeline serve`` and the KServe InferenceService load).
    """
    from kubeclr.steps import export_model, runtime

    runtime.run_step(
        "export_model",
        export_model.run,
        config,
        encoder.path,
        stats.path,
        train.path,
        test.path,
        classifier.path,
        results.path,
        model.path,
        run_name=run_name,
    )


@task(cached=False)
def deploy_model(
    config: dict,
    model: Input[Model],
    metrics_json: Input[Dataset],
    run_name: str,
    job_name: str,
    result: Output[Dataset],
):
    """Publish the exported model and create or patch its KServe InferenceService, when the run passed.

    Args:
        config: the run's resolved config (``deploy.*``, ``storage.export_uri``).
        model: the export folder from ``export_model``.
        metrics_json: the report's ``metrics.json`` (the gate's verdict, the test accuracy).
        run_name: the run's name ('' = the KFP run's own name): the model goes to
            ``<storage.export_uri>/<run_name>/model/``.
        job_name: the KFP run's name (filled in by the pipeline).
        result: whether it deployed and why, the InferenceService and the model's URI (JSON).
    """
    from kubeclr.steps import deploy_model, runtime

    runtime.run_step(
        "deploy_model",
        deploy_model.run,
        config,
        model.path,
        metrics_json.path,
        result.path,
        run_name=run_name,
        job_name=job_name,
    )


@task(cached=False)
def register_model(config: dict, model: Input[Model], run_name: str, job_name: str, result: Output[Dataset]):
    """Register the exported model with the Kubeflow Model Registry as a new version named after the run.

    Args:
        config: the run's resolved config (``registry.*``).
        model: the export folder from ``export_model``; its URI is the version's artifact.
        run_name: the version's name ('' = the KFP run's own name).
        job_name: the KFP run's name (filled in by the pipeline).
        result: what was registered (JSON).
    """
    from kubeclr.steps import register_model, runtime

    runtime.run_step(
        "register_model",
        register_model.run,
        config,
        model.path,
        model.uri,
        result.path,
        run_name=run_name,
        job_name=job_name,
    )


@task(cached=False)
def regression_gate(config: dict, metrics_json: Input[Dataset], run_name: str, job_name: str):
    """Fail the run when the regression gate failed (``gate.action=fail``); pass otherwise.

    Runs after the report step, which always succeeds so that its report, summary and
    metrics.json are uploaded and readable on the run page.

    Args:
        config: the run's resolved config (from ``resolve_config``).
        metrics_json: the report step's ``metrics.json`` (its ``gate`` block).
        run_name: the run's name ('' = the KFP run's own name).
        job_name: the KFP run's name (filled in by the pipeline).
    """
    from kubeclr.steps import regression_gate, runtime

    runtime.run_step(
        "regression_gate", regression_gate.run, config, metrics_json.path, run_name=run_name, job_name=job_name
    )


# -- a sweep ----------------------------------------------------------------------------------


@task(cached=False)
def trial_config(
    config: dict,
    trial: dict,
    checkpoint_scope: str,
    run_name: str,
    job_name: str,
) -> NamedTuple(
    "TrialConfig",
    [
        ("pretrain", dict),
        ("extract_features", dict),
        ("linear_eval", dict),
        ("checkpoint_scope", str),
        ("run_name", str),
    ],
):
    """One trial of a sweep: the run's config with the trial's overrides, cut into its tasks' slices.

    Args:
        config: the run's resolved config (from ``resolve_config``), shared by every trial.
        trial: ``{"index": i, "overrides": {key: value}}``, one item of the sweep's ParallelFor.
        checkpoint_scope: the run's checkpoint scope (the KFP run ID on a cluster); the trial's is
            ``<scope>/trial-NN-<config digest>``, so a retried trial resumes its own checkpoints.
        run_name: the run's name ('' = the KFP run's own name); the trial's is ``<name>-trial-NN``.
        job_name: the KFP run's name (filled in by the pipeline).
    """
    from kubeclr.steps import runtime, trial_config

    return runtime.run_step(
        "trial_config",
        trial_config.run,
        config,
        trial,
        checkpoint_scope=checkpoint_scope,
        run_name=run_name,
        job_name=job_name,
    )


@task(cached=False)
def leaderboard(
    config: dict,
    sweep: dict,
    histories: Input[list[Dataset]],
    results: Input[list[Dataset]],
    encoders: Input[list[Model]],
    run_name: str,
    job_name: str,
    html: Output[HTML],
    summary: Output[Markdown],
    metrics: Output[Metrics],
    leaderboard_json: Output[Dataset],
    encoder: Output[Model],
):
    """Rank the sweep's trials on validation; the winner's test accuracy is the headline.

    Args:
        config: the run's resolved config (from ``resolve_config``), every trial's base.
        sweep: the selection metric, whether seeds are swept, and the trials (fixed at compile time).
        histories: every trial's pretraining history (collected from the ParallelFor).
        results: every trial's linear-eval and kNN results (collected).
        encoders: every trial's encoder (collected); the winner's becomes ``encoder``.
        run_name: the sweep's name ('' = the KFP run's own name).
        job_name: the KFP run's name (filled in by the pipeline).
        html: the leaderboard page (table, accuracy-vs-parameter charts, each trial's config).
        summary: the Markdown leaderboard, rendered on the run page.
        metrics: the winner's numbers and the number of trials, for the run page.
        leaderboard_json: ``leaderboard.json`` (trials, ranking, winner, headline).
        encoder: the winning trial's encoder, bit for bit.
    """
    from kubeclr.steps import leaderboard, runtime

    outputs = {
        "leaderboard.json": leaderboard_json.path,
        "leaderboard.html": html.path,
        "leaderboard.md": summary.path,
        "encoder.pt": encoder.path,
    }
    runtime.run_step(
        "leaderboard",
        leaderboard.run,
        config,
        sweep,
        [a.path for a in histories],
        [a.path for a in results],
        [a.path for a in encoders],
        outputs,
        run_name=run_name,
        job_name=job_name,
        metrics=metrics,
    )


# -- the first task, generated from the UI parameters' table ----------------------------------


def _resolve_config() -> Callable:
    """The ``resolve_config`` task: ``config`` + one input per UI parameter, the run's config + each slice out.

    Its source is generated (KFP embeds a component's source in the pipeline, so it has to exist as
    text) and registered with :mod:`linecache` so that :func:`inspect.getsource` finds it.
    """
    outputs = ["config", "source_fingerprint", *sliced()]
    types = {"source_fingerprint": "str"}
    annotation = ", ".join(f'("{name}", {types.get(name, "dict")})' for name in outputs)
    params = "".join(f"    {p.name}: {p.type.__name__},\n" for p in UI_PARAMS)
    docs = "".join(f"        {p.name}: {p.help.rstrip('.')} ({p.key}).\n" for p in UI_PARAMS)
    slices = "".join(f"        {name}: the {name} task's config: what its step reads.\n" for name in sliced())
    source = (
        f"def resolve_config(\n    config: dict,\n{params}"
        f') -> NamedTuple("Resolved", [{annotation}]):\n'
        '    """Resolve the run\'s config once; fingerprint the data source; cut each cached task\'s slice.\n\n'
        "    Never cached. A key set both as a parameter below and inside ``config`` fails the run.\n\n"
        "    Args:\n"
        "        config: every run-time config key except those of the UI parameters below.\n"
        f"{docs}\n"
        "    Returns:\n"
        "        config: the run's whole resolved config (the report, the gate and other uncached tasks).\n"
        "        source_fingerprint: what the dataset source holds now (the data step's cache key).\n"
        f'{slices}    """\n'
        "    from kubeclr.steps import resolve_config, runtime\n\n"
        f"    ui = dict({', '.join(f'{p.name}={p.name}' for p in UI_PARAMS)})\n"
        f'    return runtime.run_task("resolve_config", resolve_config.run, config, ui, {tuple(sliced())!r})\n'
    )
    filename = "<kubeclr.components.resolve_config>"
    linecache.cache[filename] = (len(source), None, source.splitlines(keepends=True), filename)
    namespace: dict = {"NamedTuple": NamedTuple}
    exec(compile(source, filename, "exec"), namespace)
    return namespace["resolve_config"]


resolve_config = _resolve_config()
TASKS = {"resolve_config": resolve_config, **TASKS}


def build(image: str = IMAGE) -> SimpleNamespace:
    """Every task's KFP component on ``image``, by task name (``c.pretrain``).

    Raises:
        UserError: ``image`` has no pinned tag or digest.
    """
    if image.endswith(":latest") or ":" not in image.rsplit("/", 1)[-1] and "@" not in image:
        raise UserError(f"image {image!r} must carry a pinned tag or digest, never :latest")
    return SimpleNamespace(
        **{name: dsl.component(fn, base_image=image, install_kfp_package=False) for name, fn in TASKS.items()}
    )
