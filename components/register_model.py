"""Component of the ``register_model`` step (CPU, seconds; only with ``registry.url`` set)."""

from kfp.dsl import Dataset, Input, Model, Output


def register_model(
    config: dict,
    model: Input[Model],
    run_name: str,
    job_name: str,
    result: Output[Dataset],
):
    """Register the exported model with the Kubeflow Model Registry as a new version named after the run.

    Args:
        config: the run's resolved config (``registry.*``).
        model: the export folder from ``export_model``; its URI is the version's artifact.
        run_name: the version's name ('' = the KFP run's own name).
        job_name: the KFP run's name (filled in by the pipeline).
        result: what was registered (JSON).
    """
    from kubeclr.steps import register_model, runtime

    runtime.run_step(
        "register_model",
        register_model.run,
        config,
        model.path,
        model.uri,
        result.path,
        run_name=run_name or job_name,
    )
