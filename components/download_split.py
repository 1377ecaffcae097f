"""Component of the ``download_split`` step (CPU); it also resolves the run's config."""

from kfp.dsl import Dataset, Output


def download_split(
    config: dict,
    cifar_source: str,
    cifar_md5: str,
    arch: str,
    epochs: int,
    batch_size: int,
    lr: float,
    temperature: float,
    checkpoint_uri: str,
    mirror_uri: str,
    export_uri: str,
    engine: str,
    run_name: str,
    job_name: str,
    train: Output[Dataset],
    val: Output[Dataset],
    test: Output[Dataset],
) -> dict:
    """Download, verify and split CIFAR-10; resolve the config every later step runs with.

    The UI parameters are merged into ``config`` here, once (a key set in both
    places fails the run); the result is this step's output and every later
    step's ``config`` input.

    Args:
        config: every config key except those of the UI parameters below.
        cifar_source: https://…, s3://bucket/key, file:///path, a path, or ``sample``
            (a small synthetic dataset in the CIFAR layout, offline) (data.source).
        cifar_md5: expected MD5 of the tarball; ``none`` skips the check (data.md5).
        arch: encoder architecture (model.arch).
        epochs: pretraining epochs (pretrain.epochs).
        batch_size: global batch size (pretrain.batch_size).
        lr: base learning rate (pretrain.lr).
        temperature: NT-Xent temperature (pretrain.temperature).
        checkpoint_uri: checkpoint prefix (storage.checkpoint_uri).
        mirror_uri: s3:// prefix caching the tarball (storage.mirror_uri).
        export_uri: export prefix of the report step (storage.export_uri).
        engine: the multi-node engine, trainjob or pytorchjob (cluster.engine).
        run_name: the run's name ('' = the KFP run's own name).
        job_name: the KFP run's name (filled in by the pipeline).
        train: uint8 images + labels + class names of the train split.
        val: the validation split (``data_batch_5`` by default).
        test: the test split (``test_batch``).

    Returns:
        The resolved config: every section, every key.
    """
    from kubeclr.steps import download_split, runtime

    ui = dict(
        cifar_source=cifar_source,
        cifar_md5=cifar_md5,
        arch=arch,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        temperature=temperature,
        checkpoint_uri=checkpoint_uri,
        mirror_uri=mirror_uri,
        export_uri=export_uri,
        engine=engine,
    )
    return runtime.run_step(
        "download_split",
        download_split.run,
        config,
        train.path,
        val.path,
        test.path,
        run_name=run_name or job_name,
        ui_params=ui,
    )["config"]
