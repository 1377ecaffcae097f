"""Component of the ``extract_features`` step (GPU if present)."""

from kfp.dsl import Dataset, Input, Model, Output


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
        config: the run's resolved config (from ``download_split``).
        encoder: the pretrained encoder.
        stats: normalisation statistics.
        train: the train split.
        val: the validation split.
        test: the test split.
        run_name: the run's name in logs and metrics ('' = 'unnamed'; a cached step never takes
            the KFP run's own name, which differs every run and would make every run a cache miss).
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
