"""Component of the ``report`` step (CPU)."""

from kfp.dsl import HTML, Dataset, Input, Markdown, Metrics, Model, Output


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
        config: the run's resolved config (from ``download_split``), shown whole in the report.
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
        run_name=run_name or job_name,
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
