"""Component of the ``export_model`` step (CPU)."""

from kfp.dsl import Dataset, Input, Model, Output


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
        config: the run's resolved config (from ``download_split``).
        encoder: the encoder from ``pretrain``.
        stats: normalisation statistics (baked into the exported encoder).
        train: the train split (its SHA-256 goes in the card).
        test: the test split (the exported files are checked on its images).
        classifier: the linear probe from ``linear_eval``.
        results: linear evaluation and kNN results (the card's accuracy).
        run_name: the run's name in the card ('' = 'unnamed'; a cached step never takes the KFP
            run's own name, which differs every run and would make every run a cache miss).
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
