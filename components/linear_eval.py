"""Component of the ``linear_eval`` step (CPU/GPU)."""

from kfp.dsl import ClassificationMetrics, Dataset, Input, Metrics, Model, Output


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
        config: the run's resolved config (from ``download_split``).
        features: features from ``extract_features`` (the default protocol).
        encoder: the encoder (the ``crops`` protocol trains on top of it).
        stats: normalisation statistics (``crops`` protocol).
        train: the train split (``crops`` protocol).
        val: the validation split (``crops`` protocol).
        test: the test split (``crops`` protocol).
        run_name: the run's name in logs and metrics ('' = 'unnamed'; a cached step never takes
            the KFP run's own name, which differs every run and would make every run a cache miss).
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
