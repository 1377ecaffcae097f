"""Component of a sweep's ``trial_config`` task (CPU, seconds)."""

from typing import NamedTuple


def trial_config(
    config: dict,
    trial: dict,
    checkpoint_scope: str,
    run_name: str,
    job_name: str,
) -> NamedTuple("TrialConfig", [("config", dict), ("checkpoint_scope", str), ("run_name", str)]):
    """One trial of a sweep: the run's config with the trial's overrides, and where its checkpoints go.

    Args:
        config: the run's resolved config (from ``download_split``), shared by every trial.
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
        run_name=run_name or job_name,
    )
