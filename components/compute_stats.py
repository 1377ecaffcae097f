"""Component of the ``compute_stats`` step (CPU)."""

from kfp.dsl import Dataset, Input, Output


def compute_stats(config: dict, train: Input[Dataset], run_name: str, stats: Output[Dataset]):
    """Per-channel mean and std of the train split, in [0, 1], accumulated in float64.

    Args:
        config: the run's resolved config (from ``download_split``).
        train: the train split from ``download_split``.
        run_name: the run's name in logs and metrics ('' = 'unnamed'; a cached step never takes
            the KFP run's own name, which differs every run and would make every run a cache miss).
        stats: JSON with ``mean``, ``std`` and ``count``.
    """
    from kubeclr.steps import compute_stats, runtime

    runtime.run_step("compute_stats", compute_stats.run, config, train.path, stats.path, run_name=run_name)
