"""Component of the ``deploy_model`` step (CPU, seconds; ``compile --deploy`` only)."""

from kfp.dsl import Dataset, Input, Model, Output


def deploy_model(
    config: dict,
    model: Input[Model],
    metrics_json: Input[Dataset],
    run_name: str,
    job_name: str,
    result: Output[Dataset],
):
    """Publish the exported model and create or patch its KServe InferenceService, when the run passed.

    Args:
        config: the run's resolved config (``deploy.*``, ``storage.export_uri``).
        model: the export folder from ``export_model``.
        metrics_json: the report's ``metrics.json`` (the gate's verdict, the test accuracy).
        run_name: the run's name ('' = the KFP run's own name): the model goes to
            ``<storage.export_uri>/<run_name>/model/``.
        job_name: the KFP run's name (filled in by the pipeline).
        result: whether it deployed and why, the InferenceService and the model's URI (JSON).
    """
    from kubeclr.steps import deploy_model, runtime

    runtime.run_step(
        "deploy_model",
        deploy_model.run,
        config,
        model.path,
        metrics_json.path,
        result.path,
        run_name=run_name or job_name,
    )
