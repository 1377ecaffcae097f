"""Component of the ``download_split`` step (CPU); it also resolves the run's config."""

from kfp.dsl import Dataset, Output


def download_split(
    config: dict,
    cifar_source: str,
    cifar_md5: str,
    data_format: str,
    arch: str,
    epochs: int,
    batch_size: int,
    lr: float,
    temperature: float,
    checkpoint_uri: str,
    mirror_uri: str,
    export_uri: str,
    history_uri: str,
    engine: str,
    run_name: str,
    source_fingerprint: str,
    train: Output[Dataset],
    val: Output[Dataset],
    test: Output[Dataset],
    manifest: Output[Dataset],
) -> dict:
    """Download, verify, decode and split the dataset; resolve the config every later step runs with.

    The UI parameters are merged into ``config`` here, once (a key set in both
    places fails the run); the result is this step's output and every later
    step's ``config`` input.

    Args:
        config: every config key except those of the UI parameters below.
        cifar_source: the dataset: https://…, s3://bucket/key or an s3:// prefix (image folders),
            file:///path, a path, ``sample`` or ``sample-folder`` (synthetic, offline) (data.source).
        cifar_md5: expected MD5 of the tarball or archive; ``none`` skips the check (data.md5).
        data_format: cifar10, cifar100, stl10 or imagefolder (data.format).
        arch: encoder architecture (model.arch).
        epochs: pretraining epochs (pretrain.epochs).
        batch_size: global batch size (pretrain.batch_size).
        lr: base learning rate (pretrain.lr).
        temperature: NT-Xent temperature (pretrain.temperature).
        checkpoint_uri: checkpoint prefix (storage.checkpoint_uri).
        mirror_uri: s3:// prefix caching the tarball (storage.mirror_uri).
        export_uri: export prefix of the report step (storage.export_uri).
        history_uri: prefix of the run history the report step appends to and the gate reads
            (storage.history_uri).
        engine: the multi-node engine, trainjob or pytorchjob (cluster.engine).
        run_name: the run's name in logs and metrics ('' = 'unnamed'; a cached step never takes
            the KFP run's own name, which differs every run and would make every run a cache miss).
        source_fingerprint: what the source holds now (from ``fingerprint``): part of this step's
            cache key, so a changed file in the source is a cache miss. Not read otherwise.
        train: uint8 images + labels + class names of the train split, and the unlabelled images.
        val: the validation split.
        test: the test split.
        manifest: every image file read and its SHA-256, the sizes, the tarball's MD5 (JSON).

    Returns:
        The resolved config: every section, every key.
    """
    from kubeclr.steps import download_split, runtime

    ui = dict(
        cifar_source=cifar_source,
        cifar_md5=cifar_md5,
        data_format=data_format,
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
    )
    return runtime.run_step(
        "download_split",
        download_split.run,
        config,
        train.path,
        val.path,
        test.path,
        manifest.path,
        run_name=run_name,
        ui_params=ui,
    )["config"]
