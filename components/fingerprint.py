"""Component of the ``fingerprint`` task (CPU, never cached): the data step's cache key."""


def fingerprint(config: dict, cifar_source: str, cifar_md5: str, data_format: str) -> str:
    """SHA-256 of what the dataset source holds now (S3 listings with ETags, local files' SHA-256).

    The data step takes it as an input, so KFP's cache reuses the splits exactly when the
    source's content is unchanged.

    Args:
        config: every config key except the UI parameters' (only ``data`` is read).
        cifar_source: the dataset (data.source).
        cifar_md5: expected MD5 (data.md5).
        data_format: the dataset layout (data.format).

    Returns:
        The hex digest.
    """
    from kubeclr.steps import fingerprint, runtime

    return runtime.run_task("fingerprint", fingerprint.run, config, cifar_source, cifar_md5, data_format)
