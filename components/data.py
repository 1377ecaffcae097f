"""Components of the two data steps: ``download_split`` and ``compute_stats``."""

from kfp.dsl import Dataset, Input, Output


def download_split(data_config: dict, cifar_source: str, cifar_md5: str, mirror_uri: str,
                   run_name: str, job_name: str, metrics_config: dict,
                   train: Output[Dataset], val: Output[Dataset], test: Output[Dataset]):
    """Download, verify and split CIFAR-10 into train / val / test.

    Args:
        data_config: the ``data`` config section (val_split, limits, seed, …).
        cifar_source: https://…, s3://bucket/key, file:///path, a path, or
            ``sample`` (a small synthetic dataset in the CIFAR layout, offline).
        cifar_md5: expected MD5 of the tarball; ``none`` skips the check.
        mirror_uri: s3:// prefix that caches the tarball for later and
            air-gapped runs ('' = off).
        run_name: the run's name ('' = the KFP run's own name).
        job_name: the KFP run's name (filled in by the pipeline).
        metrics_config: the ``metrics`` config section (Pushgateway URL, port).
        train: uint8 images + labels + class names of the train split.
        val: the validation split (``data_batch_5`` by default).
        test: the test split (``test_batch``).
    """
    from kubeclr.steps import data, runtime

    runtime.run_step("download_split", run_name or job_name, data.download_split,
                     {"data": data_config, "metrics": metrics_config},
                     {"data.source": cifar_source, "data.md5": cifar_md5, "storage.mirror_uri": mirror_uri},
                     train.path, val.path, test.path)


def compute_stats(train: Input[Dataset], run_name: str, job_name: str, metrics_config: dict, stats: Output[Dataset]):
    """Per-channel mean and std of the train split, in [0, 1], accumulated in float64.

    Args:
        train: the train split from ``download_split``.
        run_name: the run's name ('' = the KFP run's own name).
        job_name: the KFP run's name (filled in by the pipeline).
        metrics_config: the ``metrics`` config section.
        stats: JSON with ``mean``, ``std`` and ``count``.
    """
    from kubeclr.steps import data, runtime

    runtime.run_step("compute_stats", run_name or job_name, data.compute_stats,
                     {"metrics": metrics_config}, {}, train.path, stats.path)
